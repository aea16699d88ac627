"""Internal (xoscar) addresses are for admins: whoever reaches one of those ports can
send the actors unauthenticated pickled messages. Under --auth-config, the other users
see model and replica descriptions without them."""

import re
from typing import Any, Dict, List

from .. import context

INTERNAL_KEYS = frozenset({"address", "worker_address"})
# "host:port" in free text (event messages name the worker a replica ran on): the port is
# the internal one, the host alone tells a user which machine
_HOST_PORT = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3}|localhost|\[[0-9A-Fa-f:]+\]):\d{1,5}\b")


def for_caller(data: Any) -> Any:
    principal = context.principal.get()
    if principal is None or "admin" in principal.permissions:
        return data
    return _strip(data)


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in INTERNAL_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def events_for_caller(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A model's events, their messages without internal ports for non-admins."""
    principal = context.principal.get()
    if principal is None or "admin" in principal.permissions:
        return events
    return [{**e, "message": _HOST_PORT.sub(r"\1", str(e.get("message", "")))} for e in _strip(events)]
