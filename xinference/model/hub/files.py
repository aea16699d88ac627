"""Which of a repo's files a model folder needs, and the local paths a launch names."""

import os
from pathlib import Path, PurePosixPath
from typing import Dict, List, NamedTuple, Optional

from ...errors import InvalidRequestError


class RepoFile(NamedTuple):
    size: int
    sha256: Optional[str]  # the LFS hash, where the hub gives one


# Weights in formats no engine of ours loads, and folders of other runtimes' exports.
_OTHER_RUNTIMES = (".h5", ".msgpack", ".onnx", ".onnx_data", ".ot", ".tflite", ".mlmodel",
                   ".ckpt", ".gguf", ".ggml", ".safetensors.index.json.bak")
_PICKLED = (".bin", ".pth", ".pt")
_SKIP_DIRS = frozenset({"original", "onnx", "openvino", "coreml", "tf", "flax", "gguf", ".git"})
_MEDIA = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".mp4", ".pdf")
INDEX = "model.safetensors.index.json"


def folder_files(listing: Dict[str, RepoFile], index: Optional[Dict[str, str]] = None) -> List[str]:
    """What transformers or sentence-transformers needs of a repo: configs, tokenizer,
    code and weights, in safetensors when the repo has them (never their `.bin` or
    `.pth` twins), and only the shards the top-level index names (not a second copy in
    another layout, like Mistral's `consolidated.safetensors`). `index` is that index's
    weight map when the repo has one."""
    names = [n for n in listing if not _skipped(n)]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    shards = set(index.values()) if index else None
    keep = []
    for name in names:
        if has_safetensors and name.endswith(_PICKLED):
            continue
        top_level = "/" not in name
        if shards is not None and top_level and name.endswith(".safetensors") and name not in shards:
            continue
        keep.append(name)
    return sorted(keep)


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    if any(p in _SKIP_DIRS or p.startswith(".") for p in parts[:-1]) or parts[-1].startswith("."):
        return True
    return name.lower().endswith(_OTHER_RUNTIMES + _MEDIA)


def local_path(path: str, param: str) -> Path:
    """A path on the worker given as a path or a file:// URI."""
    raw = str(path)
    if raw.startswith("file://"):
        raw = raw[len("file://"):]
    elif "://" in raw:
        raise InvalidRequestError(
            f"{param} must be a path or a file:// URI on the worker; got {path!r}.", param=param
        )
    return Path(os.path.expanduser(raw))


def explicit_weights(path: str, kind: str, param: str, file_name: Optional[str] = None) -> str:
    """A launch's `model_path` or a registration's `model_uri`: it must exist; for a
    GGUF model a folder must hold the expected file or exactly one .gguf."""
    found = local_path(path, param)
    if not found.exists():
        raise InvalidRequestError(f"{param} {str(found)!r} does not exist on the worker.",
                                  param=param, code="weights_not_found")
    if kind == "file" and found.is_dir():
        if file_name and (found / file_name).is_file():
            return str(found / file_name)
        ggufs = sorted(found.glob("*.gguf"))
        if len(ggufs) != 1:
            raise InvalidRequestError(
                f"{param} {str(found)!r} is a folder with {len(ggufs)} .gguf files; "
                "give the path of one .gguf file.", param=param)
        found = ggufs[0]
    if kind == "folder" and not found.is_dir():
        raise InvalidRequestError(f"{param} {str(found)!r} is not a folder.", param=param,
                                  code="weights_not_found")
    return str(found)
