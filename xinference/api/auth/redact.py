"""Internal (xoscar) addresses are for admins: whoever reaches one of those ports can
send the actors unauthenticated pickled messages. Under --auth-config, the other users
see model and replica descriptions without them."""

from typing import Any

from .. import context

INTERNAL_KEYS = frozenset({"address", "worker_address"})


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
