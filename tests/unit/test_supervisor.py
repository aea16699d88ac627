"""SupervisorActor in an in-process pool, with fake workers: launch bookkeeping,
undo on failure, and dropping a silent worker."""

import asyncio
from typing import Any, Dict, List

import pytest
import xoscar as xo

from xinference.core.supervisor import SupervisorActor
from xinference.errors import ConflictError, LaunchFailedError, ModelNotFoundError


class FakeWorker(xo.StatelessActor):
    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail = fail
        self.launched: List[str] = []
        self.terminated: List[str] = []

    @classmethod
    def default_uid(cls) -> str:
        return "worker"

    async def launch_replica(self, replica_uid: str, plan: Dict[str, Any], env=None, model=None):
        await asyncio.sleep(0.05)
        if self.fail:
            raise LaunchFailedError(f"{replica_uid} could not start")
        self.launched.append(replica_uid)
        return {"address": self.address, "context_length": 128, "worker_address": self.address}

    async def terminate_replica(self, replica_uid: str) -> bool:
        self.terminated.append(replica_uid)
        return True

    async def calls(self):
        return {"launched": self.launched, "terminated": self.terminated}


@pytest.fixture
async def cluster():
    pools = [await xo.create_actor_pool("127.0.0.1:0", n_process=0) for _ in range(2)]
    sup = await xo.create_actor(SupervisorActor, 1.0, 0.1, uid="supervisor", address=pools[0].external_address)
    workers = [
        await xo.create_actor(FakeWorker, i == 1, uid="worker", address=p.external_address)
        for i, p in enumerate(pools)
    ]
    for p in pools:
        await sup.add_worker(p.external_address, {"memory_available": 1, "gpus": []})
    yield sup, workers, [p.external_address for p in pools]
    for p in pools:
        await p.stop()


@pytest.mark.timeout(30)
async def test_launch_describe_terminate(cluster):
    sup, workers, addrs = cluster
    uid = await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    d = await sup.describe_model(uid)
    assert d["replica"] == 1 and d["status"] == "READY" and d["context_length"] == 128
    with pytest.raises(ConflictError):
        await sup.launch_model({"model_name": "gemma-3", "model_uid": "m"})
    await sup.terminate_model("m")
    assert (await workers[0].calls())["terminated"] == ["m-0"]
    with pytest.raises(ModelNotFoundError):
        await sup.describe_model("m")


@pytest.mark.timeout(30)
async def test_failed_replica_undoes_the_whole_launch(cluster):
    sup, workers, _ = cluster
    with pytest.raises(LaunchFailedError):
        await sup.launch_model({"model_name": "gemma-3", "model_uid": "two", "replica": 2})
    # the replica that did start was stopped again, and nothing is listed
    calls = await workers[0].calls()
    assert calls["launched"] == calls["terminated"] == ["two-0"] or calls["launched"] == calls["terminated"] == ["two-1"]
    assert await sup.list_models() == {}
    with pytest.raises(ModelNotFoundError, match="could not start"):
        await sup.describe_model("two")


@pytest.mark.timeout(30)
async def test_silent_worker_is_dropped_with_its_replicas(cluster):
    sup, _, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    assert len(await sup.list_workers()) == 2
    # keep worker 1 alive, let worker 0 fall silent
    for _ in range(8):
        await sup.heartbeat(addrs[1], {"memory_available": 1}, [])
        await asyncio.sleep(0.25)
    assert [w["worker_address"] for w in await sup.list_workers()] == [addrs[1]]
    assert await sup.list_models() == {}
    assert await sup.heartbeat(addrs[0], {}, []) is False  # told to register again


@pytest.mark.timeout(30)
async def test_heartbeat_without_a_replica_drops_it(cluster):
    sup, _, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    # a fresh replica survives a heartbeat that does not list it yet (it may be stale)
    assert await sup.heartbeat(addrs[0], {"memory_available": 1}, [])
    assert (await sup.describe_model("m"))["replica"] == 1
    await asyncio.sleep(0.3)  # two heartbeat intervals
    assert await sup.heartbeat(addrs[0], {"memory_available": 1}, ["m-0"])
    assert (await sup.describe_model("m"))["replica"] == 1
    assert await sup.heartbeat(addrs[0], {"memory_available": 1}, [])
    with pytest.raises(ModelNotFoundError, match="no longer runs it"):
        await sup.describe_model("m")
