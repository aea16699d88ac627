"""Per-request facts that code far from the route needs (logs, accounting, abort):
set once where the request enters, read anywhere below it in the same task."""

from contextvars import ContextVar
from typing import Any, Optional

# the request's id: the client's X-Request-Id (or body `request_id`), else generated
request_id: ContextVar[Optional[str]] = ContextVar("xinference_request_id", default=None)
# who is calling (xinference.api.auth.principal.Principal); None without --auth-config
principal: ContextVar[Optional[Any]] = ContextVar("xinference_principal", default=None)
