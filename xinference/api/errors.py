"""One place that turns exceptions into error responses.

The body carries the OpenAI `error` object and a `detail` string, which is what
xinference-client reads; on Ollama's routes (/api/*) it is Ollama's `{"error": "..."}`.
"""

import logging
import re
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import XinferenceError
from .context import request_id

logger = logging.getLogger(__name__)

# Ollama's API lives under this prefix; its errors take Ollama's shape.
OLLAMA_PREFIX = "/api/"


class ClientGone(Exception):
    """The HTTP client disconnected before the answer was ready."""


_TYPES = MappingProxyType({400: "invalid_request_error", 403: "permission_error", 404: "not_found_error",
          405: "invalid_request_error", 409: "conflict_error", 413: "invalid_request_error",
          415: "invalid_request_error", 429: "rate_limit_error", 501: "invalid_request_error",
          503: "service_unavailable"})


def error_body(
    message: str, error_type: str, param: Optional[str] = None, code: Optional[str] = None
) -> Dict[str, Any]:
    return {
        "error": {"message": message, "type": error_type, "param": param, "code": code},
        "detail": message,
    }


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path below the app's root path (a proxy prefix)."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path


def is_ollama_route(request: Request) -> bool:
    return is_ollama_path(request.scope)


def is_ollama_path(scope: Mapping[str, Any]) -> bool:
    return route_path(scope).startswith(OLLAMA_PREFIX)


def _body(ollama: bool, message: str, error_type: str, param: Optional[str] = None,
          code: Optional[str] = None) -> Dict[str, Any]:
    return {"error": message} if ollama else error_body(message, error_type, param, code)


def http_error(status: int, message: str, ollama: bool = False,
               headers: Optional[Mapping[str, str]] = None) -> JSONResponse:
    """An error answer for a status with no XinferenceError behind it (routing,
    the middleware's refusals)."""
    return JSONResponse(_body(ollama, message, _TYPES.get(status, "server_error")),
                        status_code=status, headers=dict(headers) if headers else None)


def unexpected(exc: BaseException, what: str = "unexpected error") -> XinferenceError:
    """Logs a failure nobody foresaw, with its traceback and the request's id, and
    returns what the client may see of it: the id to quote, not the exception's text
    (which can carry paths, addresses and arguments)."""
    rid = request_id.get()
    logger.error("%s (request id %s)", what, rid or "-", exc_info=exc)
    where = f" (request id {rid})" if rid else ""
    return XinferenceError(f"Internal server error{where}; see the server log.")


def error_response(exc: BaseException, ollama: bool = False) -> JSONResponse:
    if isinstance(exc, StarletteHTTPException):
        return http_error(exc.status_code, str(exc.detail), ollama, exc.headers)
    if not isinstance(exc, XinferenceError):
        exc = unexpected(exc)
    headers = {}
    retry = getattr(exc, "retry_after", None)
    if retry is not None:
        headers["Retry-After"] = str(retry)
    return JSONResponse(
        _body(ollama, exc.message, exc.error_type, exc.param, exc.code),
        status_code=exc.status_code,
        headers=headers,
    )


# how pydantic names the member of a union that failed (`stop.constrained-str`):
# nothing a client sent, so left out of `param`
_UNION_MEMBERS = re.compile(r"^(str|int|float|bool|dict|list|none|constrained-.*|.*\[.*\])$")


def _location(loc: Any) -> str:
    """The field a validation error is about, as the client spelled it: without
    FastAPI's leading `body`/`query`/`path` (only that one: a field may be called
    `query`) and without the union members pydantic adds."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts if not (isinstance(p, str) and _UNION_MEMBERS.match(p)))


def _validation_message(exc: RequestValidationError) -> "tuple[str, Optional[str]]":
    parts = []
    param = None
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return f"The request body is not valid JSON: {detail}".rstrip(": "), None
        where = _location(err.get("loc", ()))
        param = param or (where or None)
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "Invalid request: " + "; ".join(parts), param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(XinferenceError)
    async def _xinference(request: Request, exc: XinferenceError) -> JSONResponse:
        return error_response(exc, is_ollama_route(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(_body(is_ollama_route(request), message, "invalid_request_error", param),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc, is_ollama_route(request))

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; keeps the log free of tracebacks

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, is_ollama_route(request))
