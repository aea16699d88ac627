"""The inference requests this REST server is serving now, by request id, and how an
abort stops one.

`RequestTracking` (tracking.py) starts an `InFlightRequest` for each inference request
and makes it the current one; the serving code, far below, reports to it (which model
took the request, its first delta, its usage) through `current()`, and runs every call
that waits on a replica under `abortable`, which is what lets
`POST /v1/models/{uid}/requests/{id}/abort` stop the request wherever it is: waiting
for a slot, decoding a non-streamed answer, or between two deltas of a stream. A
cancelled call to a replica cancels the remote call, which aborts decoding there.
"""

import asyncio
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterator, List, Optional, Set

from ..errors import RequestAbortedError
from . import context
from .request_log import choose_request_id

# how many aborted ids are remembered for block_duration at most (the oldest go first)
MAX_BLOCKED = 10_000

_current: ContextVar[Optional["InFlightRequest"]] = ContextVar("xinference_inflight", default=None)


class InFlightRequest:
    """One inference request while it runs: what the metrics and usage observers get
    when it ends, and what an abort needs to stop it."""

    def __init__(self, registry: "InFlightRequests", endpoint: str, request_id: str, from_client: bool):
        self._registry = registry
        self.endpoint = endpoint
        self.request_id = request_id
        self.id_from_client = from_client
        self.started = time.perf_counter()
        self.model: Optional[str] = None  # the model uid that took it, once routed
        self.end_user: Optional[str] = None  # the request's `user` field
        self.ttft_s: Optional[float] = None
        self.usage: Dict[str, int] = {}
        self.streamed = False  # a generation was opened as a stream
        self.completed = False  # ... and its last delta (with finish_reason) came
        # the status of the error it ended with, where the response's own may not say it
        # (a stream whose headers went out as 200)
        self.failed_status: Optional[int] = None
        self.aborted = False
        # what a stream cut before its last delta has cost: the prompt (the replica puts
        # its size on the first delta) and a token per delta with text, a lower bound
        self._partial_prompt = 0
        self._pieces = 0
        self._calls: Set[asyncio.Future[Any]] = set()

    # ---- what the serving code reports ---------------------------------------------

    def routed(self, model_uid: str) -> None:
        self.model = model_uid

    def first_delta(self, at_ns: Optional[int] = None) -> None:
        """The first token came now, or at perf_counter_ns `at_ns` (a whole answer's,
        as its replica timed it)."""
        if self.ttft_s is None:
            at = time.perf_counter() if at_ns is None else at_ns / 1e9
            self.ttft_s = max(0.0, at - self.started)

    def delta(self, delta: Dict[str, Any]) -> None:
        """A generation's delta; the last one (finish_reason set) carries the usage."""
        if delta.get("finish_reason"):
            self.completed = True
            self.add_usage(delta)
            return
        if not self._partial_prompt:
            self._partial_prompt = int(delta.get("prompt_tokens") or 0)
        if delta.get("text"):
            self._pieces += 1

    def cost(self) -> Dict[str, int]:
        """The tokens this request is counted for: the replica's own count when it
        finished, else what the stream shows it used before it was cut."""
        if self.streamed and not self.completed:
            return {"prompt_tokens": self._partial_prompt, "completion_tokens": self._pieces}
        return self.usage

    def add_usage(self, counts: Dict[str, Any]) -> None:
        for key in ("prompt_tokens", "completion_tokens", "cached_tokens"):
            if counts.get(key):
                self.usage[key] = self.usage.get(key, 0) + int(counts[key])

    def failed(self, status: int) -> None:
        self.failed_status = status

    def use_id(self, request_id: str) -> bool:
        """The body's `request_id` becomes the request's id, unless the client sent
        X-Request-Id; True if it did."""
        if self.id_from_client:
            return False
        self._registry._rename(self, request_id)
        self.id_from_client = True
        return True

    # ---- abort ---------------------------------------------------------------------

    def abort(self) -> None:
        self.aborted = True
        for call in list(self._calls):
            call.cancel()

    def aborted_error(self) -> RequestAbortedError:
        self.failed_status = RequestAbortedError.status_code
        return RequestAbortedError(f"Request {self.request_id} was aborted.")


def current() -> Optional[InFlightRequest]:
    """The request the running code serves (None outside RequestTracking)."""
    return _current.get()


def note_usage(**counts: int) -> None:
    """Token counts of an answer that is no generation (embeddings, rerank)."""
    req = _current.get()
    if req is not None:
        req.add_usage(counts)


def use_request_id(request_id: str) -> None:
    """A body's `request_id` (Xinference clients send one in generate_config): the
    current request's id from now on, for abort and the log, unless X-Request-Id named it."""
    req = _current.get()
    # the log takes it only if it is as safe as a header's id would have to be
    if req is not None and req.use_id(request_id) and choose_request_id(request_id) == request_id:
        context.request_id.set(request_id)


@contextmanager
def serving(req: InFlightRequest) -> Iterator[InFlightRequest]:
    """Makes `req` the current request for the code run inside (and the tasks it starts)."""
    token = _current.set(req)
    try:
        yield req
    finally:
        _current.reset(token)


@contextmanager
def abortable(call: "asyncio.Future[Any]") -> Iterator[None]:
    """Lets an abort of the current request cancel `call` (a task waiting on a replica):
    inside the block, the cancellation it causes surfaces as RequestAbortedError."""
    req = _current.get()
    if req is None:
        yield
        return
    if req.aborted:
        call.cancel()
        raise req.aborted_error()
    req._calls.add(call)
    try:
        yield
    except asyncio.CancelledError:
        if req.aborted and call.cancelled():
            raise req.aborted_error() from None
        raise
    finally:
        req._calls.discard(call)


class InFlightRequests:
    """request id -> the requests running under it, and the ids an abort blocks for a while."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._by_id: Dict[str, List[InFlightRequest]] = {}
        self._blocked: Dict[str, float] = {}  # request id -> until, on `clock`

    def start(self, endpoint: str, request_id: str, from_client: bool) -> InFlightRequest:
        req = InFlightRequest(self, endpoint, request_id, from_client)
        self._add(req)
        return req

    def finish(self, req: InFlightRequest) -> None:
        same = self._by_id.get(req.request_id)
        if same is not None and req in same:
            same.remove(req)
            if not same:
                del self._by_id[req.request_id]

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_id.values())

    def abort(self, model_uid: str, request_id: str, block_s: float = 0) -> int:
        """Stops the requests with this id that `model_uid` serves (or that are not
        routed yet); for `block_s` seconds a request arriving with the id is aborted
        at once. Returns how many were running."""
        running = [r for r in self._by_id.get(request_id, []) if r.model in (None, model_uid)]
        for req in running:
            req.abort()
        if block_s > 0:
            self._block(request_id, block_s)
        return len(running)

    def _add(self, req: InFlightRequest) -> None:
        self._by_id.setdefault(req.request_id, []).append(req)
        until = self._blocked.get(req.request_id)
        if until is not None:
            if until > self._clock():
                req.abort()
            else:
                del self._blocked[req.request_id]

    def _rename(self, req: InFlightRequest, request_id: str) -> None:
        self.finish(req)
        req.request_id = request_id
        self._add(req)

    def _block(self, request_id: str, block_s: float) -> None:
        now = self._clock()
        for rid in [rid for rid, until in self._blocked.items() if until <= now]:
            del self._blocked[rid]
        self._blocked.pop(request_id, None)
        while len(self._blocked) >= MAX_BLOCKED:
            del self._blocked[next(iter(self._blocked))]
        self._blocked[request_id] = now + block_s
