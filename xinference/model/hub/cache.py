"""The download cache: one folder per model version under `$XINFERENCE_HOME/cache/`.

A folder is complete once `.xinference/complete.json` exists: it is written last,
after every file was checked against the hub's sizes and hashes, so a half-written
download is never loaded. `.xinference/lock` serializes the replicas and launches of
one worker that want the same version; `.xinference/download.json` tells the ones
waiting on the lock how big the download is.
"""

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from ... import constants
from ...errors import ConflictError, InvalidRequestError, ModelNotFoundError

META_DIR = ".xinference"
COMPLETE = "complete.json"
PLAN = "download.json"
LOCK = "lock"
# model versions are folder names: no separators, no "..", nothing hidden
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")


def cache_root() -> Path:
    # read at call time: tests and deployments point XINFERENCE_HOME elsewhere
    return Path(os.environ.get("XINFERENCE_HOME", constants.XINFERENCE_HOME)) / "cache"


def entry_dir(model_version: str) -> Path:
    if not _VERSION_RE.match(model_version) or ".." in model_version:
        raise InvalidRequestError(
            f"{model_version!r} is not a model version (e.g. qwen2.5-instruct--0_5B-ggufv2-q4_k_m).",
            param="model_version",
        )
    return cache_root() / model_version


def meta_path(entry: Path, name: str) -> Path:
    return entry / META_DIR / name


def read_complete(entry: Path) -> Optional[Dict[str, Any]]:
    """The completion record, if every file it lists is still there at its size."""
    try:
        record = json.loads(meta_path(entry, COMPLETE).read_text())
    except (OSError, ValueError):
        return None
    for name, size in (record.get("files") or {}).items():
        path = entry / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return record


def write_json(path: Path, data: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def bytes_on_disk(entry: Path) -> int:
    """Everything under the entry but our own records: finished files and the partial
    files the hub client writes while it downloads."""
    total = 0
    for root, dirs, files in os.walk(entry):
        if Path(root) == entry and META_DIR in dirs:
            dirs.remove(META_DIR)
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # renamed or removed between the walk and the stat
    return total


def cached_entries() -> Iterator[Dict[str, Any]]:
    root = cache_root()
    if not root.is_dir():
        return
    for entry in sorted(root.iterdir()):
        record = read_complete(entry) if entry.is_dir() else None
        if record is not None:
            yield {**record, "path": str(entry), "size_bytes": bytes_on_disk(entry)}


def entry_files(model_version: str) -> List[str]:
    """Every path that removing `model_version` deletes (the folder first)."""
    entry = entry_dir(model_version)
    if not entry.is_dir():
        raise _absent(model_version)
    files = [str(entry)]
    for root, _dirs, names in os.walk(entry):
        files.extend(os.path.join(root, n) for n in sorted(names))
    return files


def _absent(model_version: str) -> ModelNotFoundError:
    return ModelNotFoundError(f"No cached model version {model_version!r} on this worker.",
                              param="model_version", code="model_not_found")


def remove_entry(model_version: str, in_use: List[str]) -> None:
    entry = entry_dir(model_version)
    if not entry.is_dir():
        raise _absent(model_version)
    if in_use:
        raise ConflictError(
            f"Model version {model_version} is used by running replica(s) {', '.join(in_use)}; "
            "terminate them first.",
            param="model_version",
        )
    from filelock import FileLock, Timeout

    lock = FileLock(str(meta_path(entry, LOCK)))
    meta_path(entry, LOCK).parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConflictError(
            f"Model version {model_version} is being downloaded right now; cancel that launch first.",
            param="model_version",
        ) from None
    try:
        shutil.rmtree(entry)
    finally:
        lock.release()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()
