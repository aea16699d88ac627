"""A graceful stop of the REST server: once draining begins, every new request gets a
503 with Retry-After (a load balancer or client retries elsewhere or later), while the
requests already running, streams included, finish; the daemon stops when they have
(or when its --shutdown-timeout has passed)."""

import asyncio

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import http_error, is_ollama_path

RETRY_AFTER_S = 5


class Drain:
    def __init__(self) -> None:
        self.draining = False
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self.draining = True

    async def wait_idle(self, timeout: float) -> bool:
        """True when every running request finished within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def enter(self) -> None:
        self.active += 1
        self._idle.clear()

    def leave(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()


class DrainGate:
    """Counts the requests running (until their last byte is sent) and refuses new ones
    while draining."""

    def __init__(self, app: ASGIApp, drain: Drain):
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.drain.draining:
            await http_error(503, "The server is shutting down; retry on another server or later.",
                             is_ollama_path(scope), {"Retry-After": str(RETRY_AFTER_S)})(scope, receive, send)
            return
        self.drain.enter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.leave()
