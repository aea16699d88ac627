"""The ASGI layers every request passes before a route, outermost first:

1. RequestIdMiddleware: names the request (X-Request-Id in, out and in the log) and
   turns an exception nobody handled into a generic 500 that quotes that name.
2. BrowserGuard: the Host and Origin rules of `origins.py` (403).
3. Starlette's CORSMiddleware: answers preflights and labels answers for the
   origins BrowserGuard let through.
4. DrainGate (drain.py): while the server shuts down gracefully, new requests are 503s
   and the running ones are counted until they finish.
5. BodyGuard: a body over the size limit is a 413; a body sent to the API (/v1/*,
   /api/*, /token) that is not JSON is a 415 (a browser can post text/plain or a
   form to any site without a preflight: a JSON-only API is out of reach of such a
   page even if it got by the Origin rule, say from a browser that sends no Origin).
   Mounted apps (the web UI under /ui) keep their own bodies.

They are plain ASGI callables, not BaseHTTPMiddleware: that one runs the app in a
separate task and re-buffers every streamed chunk.
"""

import logging
from types import MappingProxyType
from typing import Iterable, Optional, Tuple

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..constants import MAX_BODY_BYTES
from .context import request_id
from .drain import Drain, DrainGate
from .errors import error_response, http_error, is_ollama_path, route_path
from .origins import LOOPBACK_ORIGIN_REGEX, OriginPolicy
from .request_log import HEADER, choose_request_id
from .settings import ServerSettings

logger = logging.getLogger(__name__)

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_ONLY = ("application/json",)
# The API's paths (by prefix: FastAPI's own route tables are not public and change
# shape between versions) and the bodies each takes: JSON, but for OAuth2's password
# login, which is a form by its specification.
API_PREFIXES = ("/v1/", "/api/")
BODY_TYPES = MappingProxyType({"/token": ("application/json", "application/x-www-form-urlencoded")})


def install_middleware(app: FastAPI, settings: ServerSettings, max_body_bytes: Optional[int] = None) -> None:
    """Adds the layers above; call it after every other add_middleware, so that these
    run first."""
    policy = OriginPolicy(settings.host, settings.allowed_origins)
    app.add_middleware(BodyGuard, max_bytes=max_body_bytes or MAX_BODY_BYTES)
    app.state.drain = Drain()
    app.add_middleware(DrainGate, drain=app.state.drain)
    app.add_middleware(CORSMiddleware, allow_origins=["*"] if policy.any_origin else policy.origins,
                       allow_origin_regex=LOOPBACK_ORIGIN_REGEX, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=[HEADER, "Retry-After"])
    app.add_middleware(BrowserGuard, policy=policy)
    app.add_middleware(RequestIdMiddleware)


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = choose_request_id(Headers(scope=scope).get(HEADER))
        name = HEADER.lower().encode()
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # the route may have renamed the request (a body's request_id)
                header = (name, (request_id.get() or rid).encode())
                headers = [h for h in message.get("headers", ()) if h[0].lower() != name]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:  # too late for an answer: the server closes the connection
                logger.error("request %s failed after its answer began", rid, exc_info=exc)
                raise
            # Starlette's own last-resort handler runs outside user middleware, where
            # the request id is gone: answer here instead
            await error_response(exc, is_ollama_path(scope))(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class BrowserGuard:
    def __init__(self, app: ASGIApp, policy: OriginPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host, origin = headers.get("host"), headers.get("origin")
        if not self.policy.host_allowed(host):
            refusal = (f"Requests addressed to {host!r} are refused: this server listens on a "
                       "loopback address and answers only to localhost and 127.0.0.1 (a guard "
                       "against DNS rebinding). Behind a proxy, name its origin in --allowed-origins.")
        elif origin is not None and not self.policy.origin_allowed(origin, host):
            refusal = (f"Origin {origin!r} may not call this server: only its own pages and "
                       "loopback origins may, and those named in --allowed-origins.")
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # before accepting: the server answers 403
            await send({"type": "websocket.close", "code": 1008, "reason": "forbidden"})
            return
        await http_error(403, refusal, is_ollama_path(scope))(scope, receive, send)


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit; FastAPI lets an
    HTTPException out of its body reading, so the app's handler answers 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"The request body is larger than {limit} bytes "
                              "(XINFERENCE_MAX_BODY_BYTES).")


class BodyGuard:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = _content_length(headers)
        if length is not None and length > self.max_bytes:
            await self._refuse(scope, receive, send, 413, BodyTooLarge(self.max_bytes).detail)
            return
        has_body = bool(length) or "transfer-encoding" in headers
        if has_body and scope["method"] in BODY_METHODS:
            accepted = _body_types(route_path(scope))
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if accepted is not None and not _accepts(accepted, kind):
                said = f"Content-Type {kind!r}" if kind else "no Content-Type"
                await self._refuse(scope, receive, send, 415, (
                    f"The API takes JSON bodies, sent with Content-Type: application/json; this "
                    f"request has {said}. (curl: use --json, or -H 'Content-Type: application/json'.)"))
                return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return counted

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        await http_error(status, message, is_ollama_path(scope))(scope, receive, send)


def _body_types(path: str) -> Optional[Tuple[str, ...]]:
    """The content types a path takes; None: not the API's to say."""
    if path in BODY_TYPES:
        return BODY_TYPES[path]
    return JSON_ONLY if path.startswith(API_PREFIXES) else None


def _content_length(headers: Headers) -> Optional[int]:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def _accepts(accepted: Iterable[str], kind: str) -> bool:
    json_like = kind.startswith("application/") and kind.endswith("+json")
    return kind in accepted or (json_like and "application/json" in accepted)
