"""The one place that sees every inference request start and end.

A plain ASGI middleware rather than hooks in each route: it sees the status of answers
made by the exception handlers (404 unknown model, 429, validation 400s), and it
returns only once a streamed body has ended, however it ended.
"""

import time
from types import MappingProxyType
from typing import Any, Mapping, Optional

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import context
from .errors import route_path
from .inflight import InFlightRequest, InFlightRequests, serving
from .observe import FinishedRequest, RequestObservers
from .request_log import HEADER, choose_request_id

# POST routes that run inference -> the `endpoint` their requests are counted under
ENDPOINTS: Mapping[str, str] = MappingProxyType({
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/rerank": "rerank",
    "/api/chat": "ollama_chat",
    "/api/generate": "ollama_generate",
    "/api/embed": "ollama_embed",
    "/api/embeddings": "ollama_embeddings",
})
CLIENT_GONE = 499  # nginx's code for "the client closed the connection"


def _endpoint(scope: Scope) -> Optional[str]:
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    return ENDPOINTS.get(route_path(scope))


class RequestTracking:
    def __init__(self, app: ASGIApp, observers: RequestObservers, inflight: InFlightRequests):
        self.app = app
        self._observers = observers
        self._inflight = inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _endpoint(scope)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        offered = Headers(scope=scope).get(HEADER)
        # the id the request-id middleware chose when it runs first, else the same choice
        rid = context.request_id.get() or choose_request_id(offered)
        req = self._inflight.start(endpoint, rid, from_client=offered == rid)
        principal = context.principal.get()
        status = 500

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with serving(req):
                await self.app(scope, receive, tracked_send)
        except ClientDisconnect:
            status = CLIENT_GONE
            raise
        except Exception:
            status = 500  # whatever went out before, the request failed
            raise
        finally:
            self._inflight.finish(req)
            self._observers.finished(_record(req, status, context.principal.get() or principal))


def _record(req: InFlightRequest, status: int, principal: Any) -> FinishedRequest:
    if req.failed_status is not None:
        status = req.failed_status
    elif req.streamed and not req.completed and status < 400:
        status = CLIENT_GONE  # the body stopped before the last delta without an error
    cost = req.cost()
    return FinishedRequest(
        endpoint=req.endpoint,
        model=req.model,
        status=status,
        request_id=req.request_id,
        principal=principal,
        prompt_tokens=cost.get("prompt_tokens", 0),
        completion_tokens=cost.get("completion_tokens", 0),
        cached_tokens=req.usage.get("cached_tokens", 0),
        ttft_s=req.ttft_s,
        e2e_s=time.perf_counter() - req.started,
        end_user=req.end_user,
    )

