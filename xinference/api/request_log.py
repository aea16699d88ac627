"""Request ids: what a request is called in its response's X-Request-Id and in the log
lines written while it is served."""

import logging
import re
import uuid
from typing import Optional

from .context import request_id

HEADER = "X-Request-Id"
# what a client's own id may be: enough for UUIDs, ULIDs and trace ids, nothing that
# could forge a log line or a header
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def choose_request_id(offered: Optional[str]) -> str:
    """The client's id when it is a safe one, else a new one."""
    if offered is not None and _VALID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served, for a log format:
    `%(request_id)s` ("-" outside a request) or `%(request_tag)s` (" [id]", or
    nothing outside a request). Put it on the handlers: a logger's own filters miss
    the records of its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        record.request_id = rid or "-"
        record.request_tag = f" [{rid}]" if rid else ""
        return True


def install_request_ids(logger: Optional[logging.Logger] = None) -> None:
    """Adds a RequestIdFilter to every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
