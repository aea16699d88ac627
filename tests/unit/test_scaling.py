"""Adding and removing replicas of a running model over REST, on the in-process
cluster: new replicas join the routing, a removed one leaves it before it stops, and
every bad request is a 4xx in the error shape."""

import asyncio

import pytest

from tests.unit.fake_cluster import running_stack


@pytest.fixture
async def stack():
    async with running_stack() as s:
        r = await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "m"})
        assert r.status_code == 200, r.text
        yield s


async def _served_by(stack, n=8):
    async def one():
        r = await stack.http.post("/v1/completions", json={"model": "m", "prompt": "x"})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["text"].split(":")[0]
    return {await one() for _ in range(n)}


async def test_add_then_remove_replicas_while_serving(stack):
    assert await _served_by(stack) == {"m-0"}
    r = await stack.http.post("/v1/models/m/replicas", json={"count": 2})
    assert r.status_code == 200, r.text
    assert r.json() == {"model_uid": "m", "added": ["m-1", "m-2"], "replica": 3}
    assert await _served_by(stack) == {"m-0", "m-1", "m-2"}
    desc = (await stack.http.get("/v1/models/m")).json()
    assert desc["replica"] == 3 and desc["status"] == "READY"

    load = asyncio.ensure_future(asyncio.gather(*(_served_by(stack, 4) for _ in range(4))))
    r = await stack.http.delete("/v1/models/m/replicas/m-0", params={"drain_timeout": 5})
    assert r.status_code == 200, r.text
    assert r.json() == {"model_uid": "m", "removed": "m-0", "replica": 2}
    await load  # nothing failed meanwhile
    assert await _served_by(stack) == {"m-1", "m-2"}
    workers = await stack.worker.launched()
    assert set(workers) == {"m-0", "m-1", "m-2"}
    kinds = [(e["kind"], e["replica_uid"]) for e in (await stack.http.get("/v1/models/m/events")).json()["data"]]
    assert kinds == [("added", "m-1"), ("added", "m-2"), ("removed", "m-0")]
    # the freed name is reused by the next addition
    r = await stack.http.post("/v1/models/m/replicas", json={})
    assert r.json()["added"] == ["m-0"]


@pytest.mark.parametrize("call, status, param", [
    (("post", "/v1/models/m/replicas", {"count": 0}), 400, "count"),
    (("post", "/v1/models/m/replicas", {"count": "two"}), 400, "count"),
    (("post", "/v1/models/m/replicas", {"count": 100}), 400, "count"),
    (("post", "/v1/models/m/replicas", {"worker_ip": "10.9.9.9"}), 400, "worker_ip"),
    (("post", "/v1/models/m/replicas", {"lots": 1}), 400, "lots"),
    (("post", "/v1/models/nope/replicas", {}), 404, "model"),
    (("delete", "/v1/models/m/replicas/m-0", None), 400, "replica_id"),
    (("delete", "/v1/models/m/replicas/m-7", None), 404, "replica_id"),
    (("delete", "/v1/models/m/replicas/m-0?drain_timeout=-1", None), 400, "drain_timeout"),
])
async def test_bad_scaling_requests_are_4xx(stack, call, status, param):
    method, path, body = call
    r = await (stack.http.post(path, json=body) if method == "post" else stack.http.delete(path))
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param and r.json()["detail"], r.text
    assert (await stack.http.get("/v1/models/m")).json()["replica"] == 1


async def test_the_cli_and_the_client_scale_list_and_show_events(stack):
    from tests.unit.test_lora_cli import _serve, _xinference
    from xinference.client import Client

    async with _serve(stack.app) as url:
        out = await _xinference("scale", "-u", "m", "--add", "1", "-e", url)
        assert out.exit_code == 0 and "Added m-1; m has 2 replicas." in out.output, out.output
        out = await _xinference("replicas", "-u", "m", "-e", url)
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert lines[0].split()[:3] == ["Replica", "Worker", "State"]
        assert [ln.split()[0] for ln in lines[2:4]] == ["m-0", "m-1"] and "ready" in lines[3]
        out = await _xinference("scale", "-u", "m", "--remove", "m-0", "--drain-timeout", "0", "-e", url)
        assert out.exit_code == 0 and "Removed m-0; m has 1 replicas." in out.output, out.output
        out = await _xinference("scale", "-u", "m", "--remove", "m-1", "-e", url)
        assert out.exit_code == 1 and "last replica" in out.output, out.output
        out = await _xinference("scale", "-u", "m", "-e", url)
        assert out.exit_code == 2 and "Give either --add N or --remove" in out.output
        out = await _xinference("events", "-u", "m", "-e", url)
        assert out.exit_code == 0, out.output
        assert [ln.split()[2:4] for ln in out.output.splitlines()[2:]] == [["added", "m-1"], ["removed", "m-0"]]

        def client_calls():
            with Client(url) as client:
                added = client.add_model_replicas("m", 1)
                rows = client.get_model_replicas("m")
                removed = client.remove_model_replica("m", added["added"][0], drain_timeout=0)
                return added, rows, removed, client.get_model_events("m")

        added, rows, removed, events = await asyncio.to_thread(client_calls)
        assert added["replica"] == 2 and len(rows) == 2 and removed["replica"] == 1
        assert [e["kind"] for e in events][-2:] == ["added", "removed"]


async def test_stop_cluster_terminates_every_model_and_keeps_an_in_process_app_up(stack):
    assert (await stack.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "n"})).status_code == 200
    r = await stack.http.delete("/v1/clusters")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"] is True and sorted(body["models"]) == ["m", "n"] and body["workers"] == [stack.address]
    assert (await stack.http.get("/v1/models")).json()["data"] == []
    assert (await stack.http.get("/status")).status_code == 200


async def test_launches_reserve_memory_until_the_worker_reports_it_held():
    """The supervisor counts what it placed on a worker before the worker's next
    heartbeat says so: two launches in a row cannot both take the same free memory."""
    gib = 1 << 30
    async with running_stack() as s:
        await s.supervisor.add_worker(s.address, {"memory_available": 10 * gib, "memory_total": 16 * gib,
                                                  "gpus": []})
        await s.worker.set_need({"weights": 3 * gib, "kv_cache": gib, "overhead": 0, "kv_tokens": 100})
        r = await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "a", "replica": 2})
        assert r.status_code == 200, r.text
        assert (await s.worker.meta("a-1"))["reserve"] == 4 * gib
        assert [x["memory_reserved"] for x in (await s.http.get("/v1/models/a")).json()["replicas"]] == [4 * gib] * 2
        r = await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "b"})
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "insufficient_memory" and r.headers["retry-after"]
        assert "One replica needs 4.00 GiB (weights 3.00 GiB, KV cache 1.00 GiB for 100 tokens" in error["message"]
        assert f"worker {s.address} has 2.00 GiB free of 16.00 GiB" in error["message"]
        assert (await s.http.get("/v1/models/b")).status_code == 404
        r = await s.http.post("/v1/models/a/replicas", json={"count": 1})
        assert r.status_code == 503 and "insufficient_memory" in r.text
        # the worker reports both replicas hold their memory now (it left available memory)
        await s.supervisor.heartbeat(s.address, {"memory_available": 2 * gib, "memory_total": 16 * gib,
                                                 "reserved": {"a-0": 0, "a-1": 0}}, ["a-0", "a-1"])
        assert (await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "b"})).status_code == 503
        # terminating a frees its reservation
        assert (await s.http.delete("/v1/models/a")).status_code == 200
        await s.supervisor.heartbeat(s.address, {"memory_available": 10 * gib, "memory_total": 16 * gib,
                                                 "reserved": {}}, [])
        r = await s.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "b"})
        assert r.status_code == 200, r.text
        from tests.unit.test_lora_cli import _serve, _xinference

        async with _serve(s.app) as url:
            out = await _xinference("replicas", "-u", "b", "-e", url)
        header, _, row = out.output.splitlines()[:3]
        assert header.split()[3] == "Memory" and row.split()[3:5] == ["4.00", "GiB"], out.output
