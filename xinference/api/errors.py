"""One place that turns exceptions into error responses.

The body carries the OpenAI `error` object and a `detail` string, which is what
xinference-client reads; on Ollama's routes (/api/*) it is Ollama's `{"error": "..."}`.
"""

import logging
from typing import Any, Dict, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import XinferenceError

logger = logging.getLogger(__name__)

# Ollama's API lives under this prefix; its errors take Ollama's shape.
OLLAMA_PREFIX = "/api/"


class ClientGone(Exception):
    """The HTTP client disconnected before the answer was ready."""


_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
          409: "conflict_error", 429: "rate_limit_error", 503: "service_unavailable"}


def error_body(
    message: str, error_type: str, param: Optional[str] = None, code: Optional[str] = None
) -> Dict[str, Any]:
    return {
        "error": {"message": message, "type": error_type, "param": param, "code": code},
        "detail": message,
    }


def is_ollama_route(request: Request) -> bool:
    path = request.scope.get("path", "")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path.startswith(OLLAMA_PREFIX)


def _body(ollama: bool, message: str, error_type: str, param: Optional[str] = None,
          code: Optional[str] = None) -> Dict[str, Any]:
    return {"error": message} if ollama else error_body(message, error_type, param, code)


def error_response(exc: BaseException, ollama: bool = False) -> JSONResponse:
    if isinstance(exc, XinferenceError):
        headers = {}
        retry = getattr(exc, "retry_after", None)
        if retry is not None:
            headers["Retry-After"] = str(retry)
        return JSONResponse(
            _body(ollama, exc.message, exc.error_type, exc.param, exc.code),
            status_code=exc.status_code,
            headers=headers,
        )
    logger.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        _body(ollama, f"Internal error: {type(exc).__name__}: {exc}", "server_error"),
        status_code=500,
    )


def _validation_message(exc: RequestValidationError) -> "tuple[str, Optional[str]]":
    parts = []
    param = None
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return f"The request body is not valid JSON: {detail}".rstrip(": "), None
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc)
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
        return JSONResponse(
            _body(is_ollama_route(request), str(exc.detail), _TYPES.get(exc.status_code, "server_error")),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(ClientGone)
    async def _gone(_: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)  # nobody reads it; keeps the log free of tracebacks

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, is_ollama_route(request))
