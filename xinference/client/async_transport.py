"""Sends a `Call` with httpx, and binds the call functions into async methods."""

from typing import (
    TYPE_CHECKING,
    Any,
    AsyncGenerator,
    Callable,
    Coroutine,
    Dict,
    Optional,
    TypeVar,
    Union,
)

import httpx

from .calls import Call, Stream, as_method
from .common import DONE, SKIP, check, sse_payload

if TYPE_CHECKING:
    from typing import Concatenate, ParamSpec  # Python 3.10+, and only mypy needs them

    P = ParamSpec("P")

T = TypeVar("T")


async def send(http: httpx.AsyncClient, base_url: str, headers: Dict[str, str],
               timeout: Optional[float], call: Call[Any]) -> Any:
    request = http.build_request(call.method, f"{base_url}{call.path}", json=call.json,
                                 params=call.params, headers=headers if call.authorized else None,
                                 timeout=timeout if call.bounded else None)
    resp = await http.send(request, stream=call.stream)
    if not call.stream:
        check(resp, call.what)
        return call.answer(resp.json()) if call.answer is not None else None
    if resp.status_code >= 400:
        try:
            await resp.aread()  # the error's body, for its detail
        finally:
            await resp.aclose()
        check(resp, call.what)
    chunks = aiter_sse(resp)
    # Started, an async generator is closed by the event loop once dropped, so a stream
    # that is never read still gives its connection back.
    await chunks.__anext__()
    return chunks


async def aiter_sse(response: httpx.Response) -> AsyncGenerator[Any, None]:
    """Yields None at once (see `send`), then the JSON payloads of `data:` lines until
    `[DONE]`; raises on an error event.

    The response closes when the stream ends or fails, on `aclose()`, and once the
    iterator is dropped (after a `break`, say: the event loop then closes it)."""
    try:
        yield None
        async for line in response.aiter_lines():
            obj = sse_payload(line)
            if obj is DONE:
                return
            if obj is not SKIP:
                yield obj
    finally:
        await response.aclose()


def _bind(spec: Callable[..., Call[Any]]) -> Callable[..., Any]:
    """A coroutine method that sends what `spec` describes through the instance's `_send`."""

    async def bound(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._send(spec(*args, **kwargs))

    return as_method(bound, spec)


def method(spec: "Callable[P, Call[T]]") -> "Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]":
    return _bind(spec)


def stream_method(
    spec: "Callable[P, Stream[T]]",
) -> "Callable[Concatenate[Any, P], Coroutine[Any, Any, Union[T, AsyncGenerator[T, None]]]]":
    """`method` for a call that streams when asked to: the same at run time, typed
    with the stream it may return."""
    return _bind(spec)
