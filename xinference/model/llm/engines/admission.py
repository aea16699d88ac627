"""Requests waiting for a slot in a batching engine, and how each one is handed back.

A batching engine runs a scheduler thread that owns the model; requests arrive on the
replica's event loop. A `Ticket` carries one request across: the scheduler admits it
into a slot when one is free and emits its deltas, the event loop yields them. The
queue is bounded twice: by length (`max_queue`, beyond it 429) and by waiting time
(`queue_timeout_s`, beyond it 503): both with Retry-After, so a client backs off
instead of piling up. A client that goes away leaves the queue, or, once running,
is dropped by the scheduler at its next step.

Several choices of one prompt (n > 1) travel as a group: the first ticket is queued
and carries the others as `followers`; the group is admitted when there are slots for
all of it, so that the scheduler evaluates the prompt once, in the leader's slot, and
copies the result to the followers' slots. Each ticket still streams on its own.
"""

import asyncio
import logging
import threading
import time
from collections import deque
from types import MappingProxyType
from typing import Any, AsyncIterator, Callable, Deque, Dict, List, Mapping, NamedTuple, Sequence

from ....errors import ServerBusyError, TooManyRequestsError, XinferenceError
from ....types import GenerationDelta
from ...launch_options import Float, Int
from .text_stream import paced_interval

# Seconds a request waits for a slot before a 503, unless the launch says (queue_timeout_s).
DEFAULT_QUEUE_TIMEOUT_S = 120.0
# Seconds between two streamed pieces (see text_stream.Coalescer); 0 streams every token.
DEFAULT_STREAM_INTERVAL = 0.05
# Requests that may wait per slot, unless the launch says (max_queue).
WAITING_PER_SLOT = 8
# The launch options every LLM engine takes for its queue and its streams.
QUEUE_OPTIONS = MappingProxyType({
    "max_queue": Int(1, 1_000_000),
    "queue_timeout_s": Float(0.001, 86_400),
    "stream_interval": Float(0, 10),
})


class QueueSettings(NamedTuple):
    max_queue: int
    timeout_s: float
    stream_interval: float


def queue_settings(opts: Mapping[str, Any], slots: int) -> QueueSettings:
    """What a launch's options (QUEUE_OPTIONS) make of an engine's queue with `slots`."""
    return QueueSettings(
        max_queue=int(opts.get("max_queue") or WAITING_PER_SLOT * slots),
        timeout_s=float(opts.get("queue_timeout_s") or DEFAULT_QUEUE_TIMEOUT_S),
        stream_interval=float(opts.get("stream_interval", DEFAULT_STREAM_INTERVAL)),
    )

logger = logging.getLogger(__name__)

_ADMITTED = object()


def load_figures(slots: int, busy: int, queue: "WaitQueue") -> Dict[str, int]:
    """What a batching engine reports for describe (see api/replicas.py LOAD_KEYS)."""
    return {"slots_total": slots, "slots_busy": busy, "slots_free": max(0, slots - busy),
            "queue_length": len(queue)}


class Ticket:
    """One request, from the event loop to the scheduler thread and back."""

    def __init__(self, loop: asyncio.AbstractEventLoop, request: Any,
                 followers: Sequence["Ticket"] = ()):
        self.request = request
        self.cancelled = False
        self.enqueued = time.monotonic()
        # tickets for more choices of the same prompt, admitted with this one
        self.followers: List[Ticket] = list(followers)
        self._loop = loop
        self._items: asyncio.Queue = asyncio.Queue()

    @property
    def size(self) -> int:
        """Slots the group needs."""
        return 1 + len(self.followers)

    def emit(self, item: Any) -> None:
        """A delta or an exception for the waiting consumer; safe from any thread."""
        self._loop.call_soon_threadsafe(self._items.put_nowait, item)

    def admitted(self) -> None:
        for ticket in (self, *self.followers):
            ticket.emit(_ADMITTED)

    def fail(self, err: BaseException) -> None:
        """An error for the whole group, before it was admitted."""
        for ticket in (self, *self.followers):
            ticket.emit(err)


class WaitQueue:
    def __init__(
        self,
        max_queue: int,
        timeout_s: float,
        free_slots: Callable[[], int],
        wake: Callable[[], None],
    ):
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._free_slots = free_slots
        self._wake = wake
        self._lock = threading.Lock()
        self._items: Deque[Ticket] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def submit(self, ticket: Ticket) -> None:
        with self._lock:
            # Requests the scheduler has not picked up yet but will get a free slot
            # do not count as waiting.
            waiting = len(self._items) - self._free_slots()
            if waiting >= self.max_queue:
                raise TooManyRequestsError(
                    f"All slots are busy and {waiting} requests are already waiting "
                    f"(max_queue={self.max_queue}); retry later."
                )
            self._items.append(ticket)
        self._wake()

    def take(self, n: int) -> List[Ticket]:
        """Oldest first, groups of tickets that need at most n slots in all, each told
        it is admitted (scheduler thread). A group that does not fit waits, and the
        ones behind it with it: first come, first served."""
        out: List[Ticket] = []
        with self._lock:
            while self._items and self._items[0].size <= n:
                ticket = self._items.popleft()
                if not ticket.cancelled:
                    out.append(ticket)
                    n -= ticket.size
        for ticket in out:
            ticket.admitted()
        return out

    def withdraw(self, ticket: Ticket) -> bool:
        """Removes a ticket still waiting; False if the scheduler already took it."""
        with self._lock:
            try:
                self._items.remove(ticket)
                return True
            except ValueError:
                return False

    def drain(self) -> List[Ticket]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    async def serve(self, ticket: Ticket) -> AsyncIterator[GenerationDelta]:
        """Queues the ticket (and its followers) and yields its deltas; the last one
        has finish_reason."""
        self.submit(ticket)
        try:
            await self._wait_admitted(ticket)
        except BaseException:
            # The consumer went away or timed out: leave the queue, or have the
            # scheduler free the slot at its next step.
            ticket.cancelled = True
            if self.withdraw(ticket):
                for follower in ticket.followers:
                    follower.emit(XinferenceError("The request left the queue."))
            raise
        async for delta in self._deltas(ticket):
            yield delta

    def serve_group(self, loop: asyncio.AbstractEventLoop, requests: Sequence[Any],
                    max_group: int) -> List[AsyncIterator[GenerationDelta]]:
        """The deltas of each request, requests being choices of one prompt: queued as
        groups of at most `max_group` (the slots there are), each evaluating the prompt
        once."""
        tickets = [Ticket(loop, request) for request in requests]
        streams: List[AsyncIterator[GenerationDelta]] = []
        for start in range(0, len(tickets), max(1, max_group)):
            leader, *followers = tickets[start:start + max(1, max_group)]
            leader.followers = followers
            streams.append(self.serve(leader))
            streams += [self.follow(f) for f in followers]
        return streams

    async def follow(self, ticket: Ticket) -> AsyncIterator[GenerationDelta]:
        """The deltas of a follower: it waits for its leader's admission, not queued
        itself."""
        try:
            first = await ticket._items.get()
        except BaseException:
            ticket.cancelled = True
            raise
        if first is not _ADMITTED:
            ticket.cancelled = True
            if isinstance(first, BaseException):
                raise first
            raise AssertionError(f"a ticket got {first!r} before it was admitted")
        async for delta in self._deltas(ticket):
            yield delta

    async def _deltas(self, ticket: Ticket) -> AsyncIterator[GenerationDelta]:
        finished = False
        try:
            while True:
                item = await ticket._items.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield item
                if item.finish_reason is not None:
                    finished = True
                    return
        finally:
            if not finished:  # the consumer went away: the scheduler frees the slot
                ticket.cancelled = True

    async def _wait_admitted(self, ticket: Ticket) -> None:
        try:
            first = await asyncio.wait_for(ticket._items.get(), self.timeout_s)
        except asyncio.TimeoutError:
            if self.withdraw(ticket):
                busy = ServerBusyError(
                    f"No slot became free within {self.timeout_s:g} s "
                    f"(queue_timeout_s); retry later.")
                for follower in ticket.followers:
                    follower.emit(busy)
                raise busy from None
            first = await ticket._items.get()  # admitted just as the wait ended
        if first is not _ADMITTED:
            if isinstance(first, BaseException):
                raise first
            raise AssertionError(f"a ticket got {first!r} before it was admitted")


class SchedulerThread:
    """The thread that owns a model: it steps while requests run or wait and sleeps
    otherwise; requests reach it through `queue`. It owns what every scheduler does the
    same: the thread and its wake-ups, each step's order (`_step`), the pace of streams
    (`_pace`), and failing requests (a step that raises, `stop`). An engine's scheduler
    writes what is its own:
      _busy()            slots its requests hold
      _drop_cancelled()  frees the slots of requests whose client went away
      _admit(tickets)    takes tickets the queue gave it (at most the free slots)
      _advance()         runs what is admitted one step on (prefill, decode, sample)
      _admitted()        the tickets of every admitted request
      _reset()           forgets every admitted request and the state it left
    """

    engine = "the engine"  # named in errors

    def __init__(self, slots: int, queue: QueueSettings):
        self.slots = slots
        self.stream_interval = queue.stream_interval
        self._cond = threading.Condition()
        self._stopping = False
        self.queue = WaitQueue(queue.max_queue, queue.timeout_s, self._free_slots, self._wake)
        self._thread = threading.Thread(target=self._run, name=f"{self.engine} scheduler",
                                        daemon=True)

    def start(self) -> None:
        """Called by the subclass once its state exists."""
        self._thread.start()

    def stats(self) -> Dict[str, Any]:
        return load_figures(self.slots, self._busy(), self.queue)

    def stop(self) -> None:
        """Ends the thread; running and waiting requests get an error. Blocking."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        gone = XinferenceError("The model is shutting down.")
        for ticket in self.queue.drain():
            ticket.fail(gone)
        self._fail_running(gone)

    def _free_slots(self) -> int:
        return max(0, self.slots - self._busy())

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not (self._busy() or len(self.queue)):
                    self._cond.wait()
                if self._stopping:
                    return
            try:
                self._step()
            except Exception as e:  # noqa: BLE001 - the requests fail, never the thread
                logger.exception("%s scheduler step failed", self.engine)
                self._fail_running(e if isinstance(e, XinferenceError)
                                   else XinferenceError(f"{self.engine} failed: {e}"))

    def _step(self) -> None:
        self._drop_cancelled()
        tickets = self.queue.take(self._free_slots())
        if tickets:
            self._admit(tickets)
        self._advance()

    def _pace(self) -> float:
        """Seconds between two pieces of a stream now (a TextStream's interval)."""
        return paced_interval(self.stream_interval, self._streams())

    def _streams(self) -> int:
        """Streams being sent now, which `_pace` spreads the pieces over."""
        return self._busy()

    def _fail_running(self, err: XinferenceError) -> None:
        """Sends err to every admitted request, their slots freed first."""
        tickets = self._admitted()
        self._reset()
        for ticket in tickets:
            ticket.emit(err)

    def _busy(self) -> int:
        raise NotImplementedError

    def _drop_cancelled(self) -> None:
        return None

    def _admit(self, tickets: List[Ticket]) -> None:
        raise NotImplementedError

    def _advance(self) -> None:
        raise NotImplementedError

    def _admitted(self) -> List[Ticket]:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError


class AsyncSlots:
    """The same bounds for an engine that schedules on the event loop itself (vLLM): at
    most `slots` requests inside the engine, at most `max_queue` waiting (beyond: 429),
    each waiting at most `timeout_s` (beyond: 503)."""

    def __init__(self, slots: int, max_queue: int, timeout_s: float):
        self.slots = slots
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.busy = 0
        self._waiting: Deque[asyncio.Future] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def stats(self) -> Dict[str, int]:
        return {"slots_total": self.slots, "slots_busy": self.busy,
                "slots_free": max(0, self.slots - self.busy), "queue_length": len(self._waiting)}

    async def acquire(self) -> None:
        if self.busy < self.slots and not self._waiting:
            self.busy += 1
            return
        if len(self._waiting) >= self.max_queue:
            raise TooManyRequestsError(
                f"All {self.slots} slots are busy and {len(self._waiting)} requests are already "
                f"waiting (max_queue={self.max_queue}); retry later.")
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await asyncio.wait_for(asyncio.shield(turn), self.timeout_s)
        except asyncio.TimeoutError:
            if turn in self._waiting:
                self._waiting.remove(turn)
                raise ServerBusyError(
                    f"No slot became free within {self.timeout_s:g} s (queue_timeout_s); "
                    "retry later.") from None
        except BaseException:
            if turn in self._waiting:
                self._waiting.remove(turn)
            elif turn.done() and not turn.cancelled():
                self.release()  # the slot came just as the caller left: pass it on
            raise

    def release(self) -> None:
        """Frees a slot, handing it straight to the oldest waiter if there is one."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy -= 1
