"""The slots and bounded queue in front of an engine that schedules on the event loop
(vLLM): at most `slots` inside, at most `max_queue` waiting (429), each waiting at most
`queue_timeout_s` (503), a freed slot handed straight to the oldest waiter."""

import asyncio

import pytest

from xinference.errors import ServerBusyError, TooManyRequestsError
from xinference.model.llm.engines.admission import AsyncSlots


async def test_slots_queue_and_hand_over_in_order():
    slots = AsyncSlots(2, max_queue=2, timeout_s=5)
    await slots.acquire()
    await slots.acquire()
    assert slots.stats() == {"slots_total": 2, "slots_busy": 2, "slots_free": 0, "queue_length": 0}
    order = []

    async def wait(name):
        await slots.acquire()
        order.append(name)

    first, second = asyncio.ensure_future(wait("a")), asyncio.ensure_future(wait("b"))
    await asyncio.sleep(0)
    assert len(slots) == 2
    with pytest.raises(TooManyRequestsError):
        await slots.acquire()
    slots.release()
    await first
    assert order == ["a"] and slots.busy == 2 and len(slots) == 1
    slots.release()
    await second
    assert order == ["a", "b"]
    slots.release()
    slots.release()
    assert slots.busy == 0


async def test_a_wait_past_the_timeout_is_503_and_leaves_the_queue():
    slots = AsyncSlots(1, max_queue=4, timeout_s=0.05)
    await slots.acquire()
    with pytest.raises(ServerBusyError):
        await slots.acquire()
    assert len(slots) == 0 and slots.busy == 1


async def test_a_waiter_that_leaves_does_not_take_a_slot():
    slots = AsyncSlots(1, max_queue=4, timeout_s=5)
    await slots.acquire()
    gone = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(slots) == 0
    slots.release()
    assert slots.busy == 0
    await slots.acquire()  # free again
    assert slots.busy == 1
