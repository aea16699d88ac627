"""The dynamic batcher on its own: a fake model that sleeps and records its batches."""

import asyncio
import time
from typing import List

import pytest

from xinference.errors import XinferenceError
from xinference.model.batching import DynamicBatcher

pytestmark = pytest.mark.timeout(30)


class SlowModel:
    def __init__(self, call_s: float):
        self.call_s = call_s
        self.batches: List[List[int]] = []

    def __call__(self, items: List[int]) -> List[object]:
        self.batches.append(list(items))
        time.sleep(self.call_s)
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def _closed_loop(batcher: DynamicBatcher, clients: int, rounds: int, turnaround_s: float) -> None:
    """Clients that each send a request, get the answer, and come back after a
    turnaround that grows with their index (as a REST server answers one by one)."""

    async def client(k: int) -> None:
        for r in range(rounds):
            assert await batcher.submit(k * 100 + r) == (k * 100 + r) * 10
            await asyncio.sleep(turnaround_s * (k + 1))

    await asyncio.gather(*(client(k) for k in range(clients)))


async def test_returning_clients_fill_one_batch():
    # Eight clients come back 1..8 ms after their answers: a fixed 2 ms wait splits them
    # into two or three half-empty batches; the batcher must collect all eight.
    model = SlowModel(0.03)
    batcher = DynamicBatcher(model, max_batch=32, max_wait_s=0.002)
    await _closed_loop(batcher, clients=8, rounds=6, turnaround_s=0.001)
    sizes = [len(b) for b in model.batches]
    assert sum(sizes[1:]) / len(sizes[1:]) >= 7, sizes  # the first call starts alone
    assert batcher.stats() == {"queue_length": 0, "batches": len(sizes), "batched_requests": 48}
    await batcher.close()


async def test_a_lone_client_does_not_wait_for_company():
    model = SlowModel(0.1)
    batcher = DynamicBatcher(model, max_batch=32, max_wait_s=0.002)
    await _closed_loop(batcher, clients=8, rounds=2, turnaround_s=0.001)
    await asyncio.sleep(0.3)  # the crowd has gone quiet
    start = time.perf_counter()
    assert await batcher.submit(7) == 70
    # one call (0.1 s), not the half-call window kept for returning clients (0.05 s more)
    assert time.perf_counter() - start < 0.135
    assert model.batches[-1] == [7]
    await batcher.close()


async def test_errors_stay_with_their_item_and_max_batch_holds():
    model = SlowModel(0.01)
    batcher = DynamicBatcher(model, max_batch=4, max_wait_s=0.002)
    results = await asyncio.gather(*(batcher.submit(i) for i in (1, -2, 3, 4, 5, 6)),
                                   return_exceptions=True)
    assert results[0] == 10 and str(results[1]) == "bad -2" and results[2:] == [30, 40, 50, 60]
    assert all(len(b) <= 4 for b in model.batches)
    await batcher.close()


async def test_close_fails_what_still_waits():
    model = SlowModel(0.2)
    batcher = DynamicBatcher(model, max_batch=1, max_wait_s=0.002)
    first = asyncio.ensure_future(batcher.submit(1))
    second = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0.05)  # the first is running, the second waits
    await batcher.close()
    with pytest.raises(XinferenceError, match="shutting down"):
        await second
    first.cancel()
