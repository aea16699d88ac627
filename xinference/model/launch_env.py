"""Which environment variables a launch (`envs`) may set in its replicas' processes.

A replica runs in a fresh process whose environment is the worker's plus these. Many
variables make a process load code or files of someone's choosing (LD_PRELOAD,
PYTHONPATH, CUDA_INJECTION64_PATH, HF_HOME...), so this is an allow-list of settings
that only tune threads, devices and downloads, each with the values it may take
(a hub's address only among known mirrors): anything else is refused.
Checked by the supervisor when a launch comes and again by the worker before the process starts.
"""

import math
import os
import re
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional

from ..errors import InvalidRequestError

MAX_VALUE_CHARS = 4096
_TRUE_FALSE = ("0", "1", "true", "false", "yes", "no", "on", "off")


def _count(value: str) -> Optional[str]:
    if re.fullmatch(r"[0-9]{1,6}", value) and int(value) > 0:
        return None
    return "a positive integer"


def _seconds(value: str) -> Optional[str]:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    return None if math.isfinite(number) and number > 0 else "a positive number of seconds"


def _flag(value: str) -> Optional[str]:
    return None if value.strip().lower() in _TRUE_FALSE else "0/1, true/false, yes/no or on/off"


def _one_of(*choices: str) -> Callable[[str], Optional[str]]:
    def check(value: str) -> Optional[str]:
        return None if value in choices else "one of " + ", ".join(choices)

    return check


def _text(value: str) -> Optional[str]:
    return None


def _endpoint(var: str, *known: str) -> Callable[[str], Optional[str]]:
    """A hub's address: one of the hub's own sites or well-known mirrors, or the one this
    process was started with. Any other would let a caller serve the weights, which the
    cache then hands to every later launch of that model."""
    def check(value: str) -> Optional[str]:
        allowed = {k.rstrip("/") for k in (*known, os.environ.get(var) or "") if k}
        return None if value.rstrip("/") in allowed else (
            f"one of {', '.join(sorted(allowed))} (another mirror is set in the worker's "
            "environment)")

    return check


# name -> a check of its value (None: fine; else what the value must be)
ALLOWED: Mapping[str, Callable[[str], Optional[str]]] = MappingProxyType({
    # threads of the maths libraries and of the tokenizers
    "OMP_NUM_THREADS": _count,
    "MKL_NUM_THREADS": _count,
    "OPENBLAS_NUM_THREADS": _count,
    "TOKENIZERS_PARALLELISM": _flag,
    # CUDA runtime behaviour (not CUDA_VISIBLE_DEVICES: the worker sets it from n_gpu)
    "CUDA_LAUNCH_BLOCKING": _flag,
    "CUDA_DEVICE_ORDER": _one_of("FASTEST_FIRST", "PCI_BUS_ID"),
    "CUDA_MODULE_LOADING": _one_of("LAZY", "EAGER"),
    "CUDA_DEVICE_MAX_CONNECTIONS": _count,
    "CUDA_CACHE_DISABLE": _flag,
    # downloads from the hubs this server already uses (see model/hub)
    "HF_ENDPOINT": _endpoint("HF_ENDPOINT", "https://huggingface.co", "https://hf-mirror.com"),
    "HF_TOKEN": _text,
    "HF_HUB_OFFLINE": _flag,
    "HF_HUB_DISABLE_TELEMETRY": _flag,
    "HF_HUB_DISABLE_PROGRESS_BARS": _flag,
    "HF_HUB_DISABLE_SYMLINKS_WARNING": _flag,
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": _flag,
    "HF_HUB_DISABLE_UPDATE_CHECK": _flag,
    "HF_HUB_DISABLE_XET": _flag,
    "HF_HUB_ENABLE_HF_TRANSFER": _flag,
    "HF_HUB_DOWNLOAD_TIMEOUT": _seconds,
    "HF_HUB_ETAG_TIMEOUT": _seconds,
    "HF_XET_HIGH_PERFORMANCE": _flag,
    "MODELSCOPE_ENDPOINT": _endpoint("MODELSCOPE_ENDPOINT", "https://modelscope.cn",
                                     "https://www.modelscope.cn", "https://modelscope.ai",
                                     "https://www.modelscope.ai"),
    "MODELSCOPE_API_TOKEN": _text,
    "MODELSCOPE_OFFLINE": _flag,
    "MODELSCOPE_API_MAX_RETRIES": _count,
    "MODELSCOPE_REPO_TREE_PAGE_MAX_ATTEMPTS": _count,
    "XINFERENCE_MODEL_SRC": _one_of("huggingface", "modelscope"),
    "XINFERENCE_HUB_TIMEOUT": _seconds,
})

# Why some often-asked names are refused, beyond "not on the list".
_WHY = MappingProxyType({
    "CUDA_VISIBLE_DEVICES": "the worker sets it to the GPUs it reserved (use n_gpu)",
    "XINFERENCE_TRUST_REMOTE_CODE": "it is a setting of the worker (xinference-local "
                                    "--trust-remote-code)",
})


def check_launch_env(envs: Any) -> Dict[str, str]:
    """`envs` as a checked dict, or a 400 (param "envs") naming the first refused variable."""
    if envs is None:
        return {}
    if not isinstance(envs, dict):
        raise InvalidRequestError("envs must be an object of variable names to strings.",
                                  param="envs")
    for name, value in envs.items():
        if name not in ALLOWED:
            why = _WHY.get(name, "it is not one of the variables a launch may set")
            raise InvalidRequestError(
                f"envs: {str(name)[:100]!r} is refused: {why}. A launch may set "
                f"{', '.join(sorted(ALLOWED))}.",
                param="envs",
            )
        if not isinstance(value, str):
            raise InvalidRequestError(f"envs: {name} must be a string; got {type(value).__name__}.",
                                      param="envs")
        if len(value) > MAX_VALUE_CHARS or "\0" in value:
            raise InvalidRequestError(
                f"envs: {name} must be at most {MAX_VALUE_CHARS} characters, without NUL.",
                param="envs")
        wanted = ALLOWED[name](value)
        if wanted is not None:
            raise InvalidRequestError(f"envs: {name} must be {wanted}; got {value[:100]!r}.",
                                      param="envs")
    return dict(envs)
