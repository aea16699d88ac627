"""The scheduler thread the llama.cpp, Transformers and chatglm.cpp engines share: it
sleeps without work, a step that raises fails the running requests but not the thread,
and stop() fails running and waiting requests instead of leaving them hanging."""

import asyncio
import threading
from typing import List

import pytest

from xinference.errors import XinferenceError
from xinference.model.llm.engines.admission import QueueSettings, SchedulerThread, Ticket
from xinference.types import GenerationDelta


class _Toy(SchedulerThread):
    """One slot; a request "fail" raises in the step, "hold" runs until released."""

    engine = "toy"

    def __init__(self) -> None:
        self.running: List[Ticket] = []
        self.release = threading.Event()
        self.steps = 0
        super().__init__(1, QueueSettings(max_queue=4, timeout_s=10, stream_interval=0))
        self.start()

    def _busy(self) -> int:
        return len(self.running)

    def _admit(self, tickets: List[Ticket]) -> None:
        self.running += tickets

    def _advance(self) -> None:
        self.steps += 1
        for ticket in list(self.running):
            if ticket.request == "fail":
                raise RuntimeError("boom")
            if ticket.request == "hold" and not self.release.wait(0.01):
                continue
            self.running.remove(ticket)
            ticket.emit(GenerationDelta(text="ok", finish_reason="stop"))

    def _admitted(self) -> List[Ticket]:
        return list(self.running)

    def _reset(self) -> None:
        self.running = []


async def _answer(sched: _Toy, request: str) -> str:
    ticket = Ticket(asyncio.get_running_loop(), request)
    return "".join([d.text async for d in sched.queue.serve(ticket)])


async def test_a_failing_step_fails_its_request_and_the_thread_serves_on():
    sched = _Toy()
    try:
        with pytest.raises(XinferenceError, match="toy failed: boom"):
            await _answer(sched, "fail")
        assert await _answer(sched, "fine") == "ok"
        assert sched.stats()["slots_busy"] == 0
        steps = sched.steps
        await asyncio.sleep(0.2)
        assert sched.steps == steps  # idle: no busy loop
    finally:
        await asyncio.to_thread(sched.stop)


async def test_stop_fails_the_running_and_the_waiting_request():
    sched = _Toy()
    running = asyncio.ensure_future(_answer(sched, "hold"))
    while not sched.running:
        await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(_answer(sched, "after"))
    while not len(sched.queue):
        await asyncio.sleep(0.01)
    await asyncio.to_thread(sched.stop)
    for task in (running, waiting):
        with pytest.raises(XinferenceError, match="shutting down"):
            await asyncio.wait_for(task, 5)


async def test_a_group_of_choices_is_admitted_whole_and_in_turn():
    from xinference.errors import ServerBusyError
    from xinference.model.llm.engines.admission import WaitQueue

    queue = WaitQueue(max_queue=8, timeout_s=0.3, free_slots=lambda: 0, wake=lambda: None)
    loop = asyncio.get_running_loop()
    group = queue.serve_group(loop, ["a", "b", "c"], max_group=3)
    alone = Ticket(loop, "d")
    tasks = [asyncio.ensure_future(s.__anext__()) for s in group]
    await asyncio.sleep(0.01)
    behind = asyncio.ensure_future(queue.serve(alone).__anext__())
    await asyncio.sleep(0.01)
    assert len(queue) == 2  # the group's leader, then the single request
    assert queue.take(2) == []  # the group needs 3: it waits, and what is behind it too
    leader = queue.take(3)
    assert [t.request for t in leader] == ["a"] and [f.request for f in leader[0].followers] == ["b", "c"]
    for i, ticket in enumerate([leader[0], *leader[0].followers]):
        ticket.emit(GenerationDelta(text=ticket.request, index=i))
    assert [(await t).text for t in tasks] == ["a", "b", "c"]
    # the single request was never admitted: its wait ends in a 503, as a group's does
    with pytest.raises(ServerBusyError):
        await behind
    more = queue.serve_group(loop, ["e", "f"], max_group=2)
    waits = [asyncio.ensure_future(s.__anext__()) for s in more]
    for wait in waits:  # the follower hears why its leader gave up
        with pytest.raises(ServerBusyError):
            await wait
    for stream in group + more:
        await stream.aclose()
