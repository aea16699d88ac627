"""Dynamic batching: concurrent requests to one model coalesce into one forward pass.

Requests arrive on the replica's event loop; model calls run one at a time in a
worker thread. While a call runs, new requests queue; when it ends, everything queued
(up to `max_batch` worth) goes into the next call at once. A request that finds the
model idle waits at most `max_wait_s` for company, so a lone client pays a few
milliseconds and a crowd fills each batch.
"""

import asyncio
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

    def __len__(self) -> int:
        return len(self._waiting)

    def stats(self) -> Dict[str, int]:
        """Load figures for describe: requests waiting, model calls, requests they served."""
        return {"queue_length": len(self), "batches": self.calls, "batched_requests": self.items}

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
        deadline = loop.time() + self.max_wait_s
        while size < self.max_batch:
            if not self._waiting:
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
            try:
                results = await loop.run_in_executor(self._executor, self._run, [i for i, _ in live])
            except Exception as e:  # the whole call failed: every request in it fails
                results = [e] * len(live)
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
