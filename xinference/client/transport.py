"""Sends a `Call` with requests, and binds the call functions into sync methods."""

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, TypeVar, Union

import requests

from .calls import Call, Stream, as_method
from .common import check, iter_sse

if TYPE_CHECKING:
    from typing import Concatenate, ParamSpec  # Python 3.10+, and only mypy needs them

    P = ParamSpec("P")

T = TypeVar("T")


def send(session: requests.Session, base_url: str, headers: Dict[str, str],
         timeout: Optional[float], call: Call[Any]) -> Any:
    resp = session.request(call.method, f"{base_url}{call.path}", json=call.json, params=call.params,
                           headers=headers if call.authorized else None,
                           timeout=timeout if call.bounded else None, stream=call.stream)
    check(resp, call.what)
    if call.stream:
        return iter_sse(resp)
    return call.answer(resp.json()) if call.answer is not None else None


def _bind(spec: Callable[..., Call[Any]]) -> Callable[..., Any]:
    """A method that sends what `spec` describes through the instance's `_send`."""

    def bound(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._send(spec(*args, **kwargs))

    return as_method(bound, spec)


def method(spec: "Callable[P, Call[T]]") -> "Callable[Concatenate[Any, P], T]":
    return _bind(spec)


def stream_method(spec: "Callable[P, Stream[T]]") -> "Callable[Concatenate[Any, P], Union[T, Iterator[T]]]":
    """`method` for a call that streams when asked to: the same at run time, typed
    with the stream it may return."""
    return _bind(spec)
