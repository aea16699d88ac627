"""The REST side's call coalescer, against a fake replica."""

import asyncio

import pytest

from xinference.api.coalesce import CallCoalescer
from xinference.api.replicas import Replica
from xinference.core.remote import ReplicaHandle
from xinference.errors import InvalidRequestError

pytestmark = pytest.mark.timeout(10)


class FakeRef:
    def __init__(self):
        self.calls = []

    async def embed_many(self, jobs):
        self.calls.append(list(jobs))
        await asyncio.sleep(0.01)
        return [InvalidRequestError("empty", param="input") if not job[0] else f"vec:{job[0]}" for job in jobs]


async def test_calls_ready_together_share_one_remote_call_and_keep_their_own_errors():
    a, b = FakeRef(), FakeRef()
    ra, rb = Replica("a-0", "127.0.0.1:1", ReplicaHandle(a)), Replica("b-0", "127.0.0.1:2", ReplicaHandle(b))
    co = CallCoalescer("embed_many")
    out = await asyncio.gather(co.call(ra, "x"), co.call(ra, ""), co.call(rb, "y"), co.call(ra, "z"),
                               return_exceptions=True)
    assert out[0] == "vec:x" and out[2] == "vec:y" and out[3] == "vec:z"
    assert isinstance(out[1], InvalidRequestError)
    assert a.calls == [[("x",), ("",), ("z",)]] and b.calls == [[("y",)]]  # one call per replica
    assert await co.call(ra, "w") == "vec:w"  # a later call goes on its own
    assert len(a.calls) == 2


async def test_a_failed_remote_call_reaches_every_caller_and_a_cancelled_caller_is_skipped():
    class Gone:
        async def embed_many(self, jobs):
            raise ConnectionError("replica gone")

    co = CallCoalescer("embed_many")
    r = Replica("g-0", "127.0.0.1:3", ReplicaHandle(Gone()))
    out = await asyncio.gather(co.call(r, "x"), co.call(r, "y"), return_exceptions=True)
    assert [type(e) for e in out] == [ConnectionError, ConnectionError]

    ref = FakeRef()
    r = Replica("c-0", "127.0.0.1:4", ReplicaHandle(ref))
    first = asyncio.ensure_future(co.call(r, "x"))
    second = asyncio.ensure_future(co.call(r, "y"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second == "vec:y"
