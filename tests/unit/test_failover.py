"""Failover in the REST layer (api/replicas.py): a replica that cannot be reached is
marked down and the request goes to another replica of the model at once, for every
endpoint; an error the engine sends back (even an OSError) is the request's answer,
not a reason to try elsewhere; a replica that answers again is used again."""

import asyncio
import json
import os
import signal

import pytest
import xoscar as xo

from tests.unit.fake_cluster import running_stack
from xinference.core.remote import unreachable


@pytest.fixture
async def stack():
    async with running_stack() as s:
        r = await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "m",
                                                  "replica": 2})
        assert r.status_code == 200, r.text
        yield s


async def _kill(stack, replica_uid):
    """The replica's actor is gone behind the supervisor's back (as when its process dies)."""
    await xo.destroy_actor(await xo.actor_ref(stack.address, replica_uid))


async def _chat(stack, stream=False):
    return await stack.http.post("/v1/chat/completions", json={
        "model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


async def _answered_by(r, stream):
    assert r.status_code == 200, r.text
    if stream:
        assert "[DONE]" in r.text and '"error"' not in r.text, r.text
        chunks = [json.loads(line[6:]) for line in r.text.splitlines()
                  if line.startswith("data: {")]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks).split(":")[0]
    return r.json()["choices"][0]["message"]["content"].split(":")[0]


async def test_a_lost_replica_costs_no_request_on_any_endpoint(stack):
    for stream in (False, True):  # both replicas known to the REST server
        await _answered_by(await _chat(stack, stream), stream)
    await _kill(stack, "m-0")
    for i in range(8):
        stream = bool(i % 2)
        assert await _answered_by(await _chat(stack, stream), stream) == "m-1"
    completion = await stack.http.post("/v1/completions", json={"model": "m", "prompt": "x"})
    assert completion.status_code == 200, completion.text
    ollama = await stack.http.post("/api/generate", json={"model": "m", "prompt": "x", "stream": False})
    assert ollama.status_code == 200, ollama.text
    rows = (await stack.http.get("/v1/models/m/replicas")).json()
    assert {r["replica_uid"]: r.get("down", False) for r in rows} == {"m-0": True, "m-1": False}


class _Engine(xo.StatelessActor):
    async def read(self, path):
        with open(path) as f:  # an engine's own OSError
            return f.read()

    async def pid(self):
        return os.getpid()


async def test_only_transport_failures_count_as_an_unreachable_replica(tmp_path):
    """Against xoscar itself, with the actor in a sub-process as replicas are: an OSError
    the engine raised comes back marked as remote; a dead process is a transport error."""
    pool = await xo.create_actor_pool("127.0.0.1", n_process=1)
    try:
        sub = pool.sub_processes and list(pool.sub_processes)[0]
        engine = await xo.create_actor(_Engine, uid="engine", address=sub)
        with pytest.raises(FileNotFoundError) as raised:
            await engine.read(str(tmp_path / "absent"))
        assert not unreachable(raised.value)
        os.kill(await engine.pid(), signal.SIGKILL)
        with pytest.raises(Exception) as lost:
            await asyncio.wait_for(engine.read(str(tmp_path / "absent")), 10)
        assert unreachable(lost.value), repr(lost.value)
    finally:
        await pool.stop()


async def test_no_reachable_replica_is_503_with_retry_after_and_a_returning_one_serves(stack):
    for stream in (False, True):
        await _answered_by(await _chat(stack, stream), stream)
    await _kill(stack, "m-0")
    await _kill(stack, "m-1")
    for stream in (False, True):
        r = await _chat(stack, stream)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] and r.json()["error"]["type"] == "service_unavailable"
    # m-1 comes back at the same address (as an adopted replica would): checked, used again
    from tests.unit.fake_cluster import FakeReplica
    await xo.create_actor(FakeReplica, "m-1", uid="m-1", address=stack.address)
    for _ in range(100):
        rows = (await stack.http.get("/v1/models/m/replicas")).json()
        if not next(r for r in rows if r["replica_uid"] == "m-1").get("down"):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"m-1 still down: {rows}")
    assert await _answered_by(await _chat(stack), False) == "m-1"
