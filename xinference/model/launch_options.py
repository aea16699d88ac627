"""Typed launch options: each engine declares what it takes (type, range, choices), and a
launch is checked against that before any process starts.

Over REST an option arrives as JSON, so a wrong type (`"n_ctx": "abc"`) would otherwise
surface only in the replica, as a failed launch with a 500; and an option that no
engine reads would be silently ignored. The CLI turns `--n_ctx 512` into a number
before it sends it.
"""

import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple

from ..constants import TRUST_REMOTE_CODE_ENV
from ..errors import InvalidRequestError

# Options that belong to the server, not to a launch: naming one is an error that says so.
SERVER_SETTINGS = MappingProxyType({
    "trust_remote_code": (
        "trust_remote_code is a setting of the server, not of a launch: start the worker with "
        f"`xinference-local --trust-remote-code` (or {TRUST_REMOTE_CODE_ENV}=1 in the "
        "worker's environment) to let models run code from their folders."
    ),
})


@dataclass(frozen=True)
class Option:
    kind: str  # "int", "float", "bool" or "str"
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Tuple[str, ...] = ()
    pattern: Optional[str] = None  # what a "str" must match, in full
    # the name of a limit of the model (e.g. "context_length") that caps `high`
    capped_by: Optional[str] = None


def Int(low: int, high: int, capped_by: Optional[str] = None) -> Option:
    return Option("int", low, high, capped_by=capped_by)


def Float(low: float, high: float) -> Option:
    return Option("float", low, high)


def Bool() -> Option:
    return Option("bool")


def Choice(*choices: str) -> Option:
    return Option("str", choices=choices)


def Text(pattern: str) -> Option:
    return Option("str", pattern=pattern)


# Shared by every engine that runs torch.
DEVICE = Text(r"cpu|cuda(:[0-9]{1,2})?|mps|xpu(:[0-9]{1,2})?")
THREADS = Int(1, 1024)


def check_options(subject: str, given: Optional[Mapping[str, Any]], options: Mapping[str, Option],
                  limits: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
    """The options that were given (None: the engine's default, dropped), checked against
    `options`; a 400 naming the option otherwise. `subject` starts the message about an
    unknown option ("Engine llama.cpp does not take"); `limits` holds the model's own
    figures that cap options (e.g. {"context_length": 8192})."""
    given = {k: v for k, v in (given or {}).items() if v is not None}
    for name in given:
        if name in SERVER_SETTINGS:
            raise InvalidRequestError(SERVER_SETTINGS[name], param=name,
                                      code="server_setting")
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise InvalidRequestError(
            f"{subject} {', '.join(unknown)}; the options are {', '.join(options) or 'none'}.",
            param=unknown[0],
        )
    for name, value in given.items():
        wanted = _wanted(options[name], value, limits or {})
        if wanted is not None:
            raise InvalidRequestError(f"{name} must be {wanted}; got {_show(value)}.", param=name)
    return given


def _wanted(option: Option, value: Any, limits: Mapping[str, int]) -> Optional[str]:
    """None when `value` fits `option`, else what it must be."""
    if option.kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if option.kind == "str":
        if option.choices:
            return None if value in option.choices else "one of " + ", ".join(option.choices)
        matches = isinstance(value, str) and re.fullmatch(option.pattern or ".*", value)
        return None if matches else f"a string matching {option.pattern}"
    high, why = option.high, ""
    if option.capped_by and option.capped_by in limits and limits[option.capped_by] < (high or math.inf):
        high, why = limits[option.capped_by], f" (the model's {option.capped_by})"
    if option.kind == "int":
        what = f"an integer from {option.low:g} to {high:g}{why}"
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        what = f"a number from {option.low:g} to {high:g}{why}"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (option.low is not None and value < option.low) or (high is not None and value > high):
        return what
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
