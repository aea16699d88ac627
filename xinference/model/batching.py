"""Dynamic batching: concurrent requests to one model coalesce into one forward pass.

Requests arrive on the replica's event loop; model calls run one at a time in a
worker thread. While a call runs, new requests queue; when it ends, everything queued
(up to `max_batch` worth) goes into the next call at once.

How long to wait for company comes from the traffic itself. When a call ends, the
requests it answered plus those already queued are the clients in play; their next
requests will come back one by one, as fast as the REST server turns them round. The
next batch collects until it holds that many (or `max_batch`), or until it has waited
`max_wait_s` or half as long as the last call took, whichever is longer. A lone client
never waits; a crowd gets full batches instead of alternating half-empty ones. On a
small CPU that matters: the REST server and the model share the cores, so a half-empty
batch does not overlap with the REST work, it competes with it, and every call pays
the model's fixed per-call cost again.
"""

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, Generic, List, Optional, Tuple, TypeVar

from ..errors import XinferenceError

Item = TypeVar("Item")
Result = TypeVar("Result")


class DynamicBatcher(Generic[Item, Result]):
    """`run(items)` returns one result per item: a value, or an exception for that
    item alone. `size(item)` is what counts against `max_batch` (e.g. its texts); an
    item bigger than `max_batch` runs alone."""

    def __init__(self, run: Callable[[List[Item]], List[Any]], max_batch: int, max_wait_s: float,
                 size: Callable[[Item], int] = lambda _: 1, name: str = "batcher"):
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._size = size
        self._waiting: Deque[Tuple[Item, asyncio.Future]] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._task: Optional[asyncio.Task] = None
        self.calls = 0  # model calls so far, and the items they served
        self.items = 0
        self._last_call_s = 0.0
        self._in_play = 1  # clients (in size units) seen around the last call
        self._ended = 0.0  # when it ended, on the loop's clock

    def __len__(self) -> int:
        return len(self._waiting)

    def stats(self) -> Dict[str, int]:
        """Load figures for describe: requests waiting, model calls, requests they served."""
        return {"queue_length": len(self), "batches": self.calls, "batched_requests": self.items}

    async def in_model_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs fn in the thread that runs the model calls. A forward pass made in another
        thread (a warm-up, a check at load) would leave torch a second OpenMP thread team
        for good; with more OpenMP threads than cores, libgomp stops spinning between
        parallel regions, and small batches then wait on every wake-up (measured: 20%
        fewer one-sentence requests per second)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def submit(self, item: Item) -> Result:
        if self._task is None:
            self._task = asyncio.create_task(self._loop())
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._arrived.set()
        return await future

    async def _next_batch(self) -> List[Tuple[Item, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        while not self._waiting:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._waiting.popleft()]
        size = self._size(batch[0][0])
        window = max(self.max_wait_s, self._last_call_s / 2)
        now = loop.time()
        # clients that have not come back within a window have gone quiet
        target = min(self.max_batch, self._in_play if now - self._ended < window else 1)
        deadline = now + window
        while size < self.max_batch:
            if not self._waiting:
                if size >= target:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    break
                continue
            more = self._size(self._waiting[0][0])
            if size + more > self.max_batch:
                break
            batch.append(self._waiting.popleft())
            size += more
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            live = [(item, fut) for item, fut in await self._next_batch() if not fut.done()]
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._run, [i for i, _ in live])
            except Exception as e:  # the whole call failed: every request in it fails
                results = [e] * len(live)
            self._last_call_s = time.perf_counter() - started
            self._ended = loop.time()
            self._in_play = sum(self._size(i) for i, _ in live) + sum(self._size(i) for i, _ in self._waiting)
            self.calls += 1
            self.items += len(live)
            for (_, fut), result in zip(live, results):
                if fut.done():  # its client went away meanwhile
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        while self._waiting:
            _, fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(XinferenceError("The model is shutting down."))
        await asyncio.to_thread(self._executor.shutdown, True)
