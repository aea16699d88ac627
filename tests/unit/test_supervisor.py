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

    async def set_fail(self, fail: bool) -> None:
        self.fail = fail


@pytest.fixture
async def cluster(monkeypatch):
    monkeypatch.setattr("xinference.core.healing.FIRST_DELAY_S", 0.01)
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
async def test_silent_worker_is_dropped_and_its_pinned_replica_given_up(cluster):
    sup, _, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    assert len(await sup.list_workers()) == 2
    # keep worker 1 alive, let worker 0 fall silent
    for _ in range(8):
        await sup.heartbeat(addrs[1], {"memory_available": 1}, [])
        await asyncio.sleep(0.25)
    assert [w["worker_address"] for w in await sup.list_workers()] == [addrs[1]]
    # pinned to worker 0 (worker_ip), it has nowhere to go: relaunches fail, then it is dropped
    await _until(lambda: sup.list_models(), lambda models: models == {})
    with pytest.raises(ModelNotFoundError, match=f"worker {addrs[0]} is gone"):
        await sup.describe_model("m")
    assert await sup.heartbeat(addrs[0], {}, []) is False  # told to register again


async def _until(call, check, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await call()
        if check(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached: {value!r}")
        await asyncio.sleep(0.05)


def _kinds(events):
    return [e["kind"] for e in events]


@pytest.mark.timeout(30)
async def test_a_lost_worker_s_replica_is_relaunched_on_another(cluster):
    sup, workers, addrs = cluster
    await workers[1].set_fail(False)
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m"})
    first = (await sup.describe_model("m"))["replicas"][0]["worker_address"]
    other = addrs[1 - addrs.index(first)]
    await sup.remove_worker(first, "gone in a test")
    desc = await _until(lambda: sup.describe_model("m"), lambda d: d["replicas"][0]["ready"])
    assert desc["replicas"][0]["worker_address"] == other and desc["status"] == "READY"
    assert desc["restarts"] == 1 and "gone in a test" in desc["last_error"]
    events = await sup.model_events("m")
    assert _kinds(events) == ["worker_lost", "relaunching", "relaunched"]
    assert (await sup.locate("m"))["replicas"][0]["replica_uid"] == "m-0"


@pytest.mark.timeout(30)
async def test_a_replica_that_keeps_crashing_is_relaunched_three_times_then_given_up(cluster):
    sup, workers, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    for restarts in (1, 2, 3):
        await sup.replica_lost("m-0", "its process ended unexpectedly")
        desc = await sup.describe_model("m")
        assert desc["replicas"][0]["state"] == "restarting" and desc["status"] == "RESTARTING"
        desc = await _until(lambda: sup.describe_model("m"), lambda d: d["replicas"][0]["ready"])
        assert desc["restarts"] == restarts
    assert (await workers[0].calls())["launched"] == ["m-0"] * 4
    await sup.replica_lost("m-0", "its process ended unexpectedly")
    assert await sup.list_models() == {}
    with pytest.raises(ModelNotFoundError, match="ended unexpectedly"):
        await sup.describe_model("m")


@pytest.mark.timeout(30)
async def test_terminating_a_model_stops_its_relaunch(cluster):
    sup, workers, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    await workers[0].set_fail(True)
    await sup.replica_lost("m-0", "its process ended unexpectedly")
    await _until(lambda: sup.model_events("m"), lambda ev: "relaunch_failed" in _kinds(ev))
    await sup.terminate_model("m")
    launched = len((await workers[0].calls())["launched"])
    await asyncio.sleep(0.3)
    assert len((await workers[0].calls())["launched"]) == launched
    assert await sup.list_models() == {}


@pytest.mark.timeout(30)
async def test_heartbeat_without_a_replica_relaunches_it(cluster):
    sup, workers, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    # a fresh replica survives a heartbeat that does not list it yet (it may be stale)
    assert await sup.heartbeat(addrs[0], {"memory_available": 1}, [])
    assert (await sup.describe_model("m"))["replica"] == 1
    await asyncio.sleep(0.3)  # two heartbeat intervals
    assert await sup.heartbeat(addrs[0], {"memory_available": 1}, ["m-0"])
    assert (await sup.describe_model("m"))["replica"] == 1
    assert await sup.heartbeat(addrs[0], {"memory_available": 1}, [])
    desc = await _until(lambda: sup.describe_model("m"), lambda d: d["replicas"][0]["ready"])
    assert desc["restarts"] == 1 and "no longer runs it" in desc["last_error"]
    assert (await workers[0].calls())["launched"] == ["m-0", "m-0"]


@pytest.mark.timeout(30)
async def test_a_worker_reporting_a_replica_that_runs_elsewhere_is_told_to_stop_it(cluster):
    sup, workers, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    report = {"replica_uid": "m-0", "address": "127.0.0.1:1", "model": {"model_uid": "m"}}
    await sup.add_worker(addrs[1], {"memory_available": 1, "gpus": []}, [report])
    assert (await workers[1].calls())["terminated"] == ["m-0"]
    desc = await sup.describe_model("m")
    assert [(r["worker_address"], r["ready"]) for r in desc["replicas"]] == [(addrs[0], True)]


@pytest.mark.timeout(30)
async def test_a_replica_being_relaunched_is_adopted_when_its_worker_comes_back_with_it(cluster, monkeypatch):
    monkeypatch.setattr("xinference.core.healing.FIRST_DELAY_S", 0.5)
    sup, workers, addrs = cluster
    await sup.launch_model({"model_name": "gemma-3", "model_uid": "m", "worker_ip": addrs[0]})
    address = (await sup.locate("m"))["replicas"][0]["address"]
    await sup.remove_worker(addrs[0], "missed heartbeats")  # pinned: its relaunch waits for it
    assert (await sup.describe_model("m"))["status"] == "RESTARTING"
    report = {"replica_uid": "m-0", "address": address, "model": {"model_uid": "m"}}
    await sup.add_worker(addrs[0], {"memory_available": 1, "gpus": []}, [report])
    desc = await sup.describe_model("m")
    assert desc["status"] == "READY" and desc["replicas"][0]["state"] == "ready"
    for _ in range(6):  # no relaunch happens any more (the worker keeps heart-beating)
        assert await sup.heartbeat(addrs[0], {"memory_available": 1}, ["m-0"])
        await asyncio.sleep(0.25)
    assert (await workers[0].calls())["launched"] == ["m-0"]
    assert _kinds(await sup.model_events("m")) == ["worker_lost", "adopted"]
