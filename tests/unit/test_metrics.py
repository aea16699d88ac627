"""GET /metrics over the fake cluster (fake_cluster.py): request counters and token
counts after real requests through the REST app, gauges read at scrape time, and a
scrape that stays quick when a replica hangs or is gone."""

import asyncio
import time

import pytest

from tests.unit.fake_cluster import running_stack
from tests.unit.prom_text import scrape, value
from tests.unit.slow_replicas import CACHED_TOKENS, PROMPT_TOKENS, SLOTS, swap_replica, wait_for
from xinference.api import replicas

pytestmark = pytest.mark.timeout(60)

MSG = [{"role": "user", "content": "hi"}]


async def launch(stack, uid: str, **extra) -> None:
    await stack.supervisor.launch_model({"model_name": "gemma-3", "model_uid": uid, **extra})


async def _active(replica, n: int) -> bool:
    return (await replica.counts())["active"] == n


async def test_requests_tokens_and_latency_are_counted_per_model_and_endpoint(stack):
    await launch(stack, "m")
    http = stack.http
    assert (await http.post("/v1/chat/completions", json={"model": "m", "messages": MSG})).status_code == 200
    r = await http.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True})
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    assert (await http.post("/v1/completions", json={"model": "m", "prompt": "x"})).status_code == 200
    r = await http.post("/api/chat", json={"model": "m", "messages": MSG, "stream": False})
    assert r.status_code == 200
    # errors before any replica: an unknown model, a body that fails validation
    assert (await http.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})).status_code == 404
    assert (await http.post("/v1/chat/completions", json={"model": "m", "messages": []})).status_code == 400
    # not an inference route: not counted
    assert (await http.get("/v1/models")).status_code == 200

    s = await scrape(http)
    req = "xinference_requests_total"
    assert value(s, req, model="m", endpoint="chat", status="200") == 2
    assert value(s, req, model="m", endpoint="completions", status="200") == 1
    assert value(s, req, model="m", endpoint="ollama_chat", status="200") == 1
    assert value(s, req, model="unknown", endpoint="chat", status="404") == 1
    assert value(s, req, model="unknown", endpoint="chat", status="400") == 1
    assert sum(v for (name, _), v in s.items() if name == req) == 6
    # the echoing replica reports 1 prompt and 1 completion token per answer
    assert value(s, "xinference_prompt_tokens_total", model="m", endpoint="chat") == 2
    assert value(s, "xinference_completion_tokens_total", model="m", endpoint="chat") == 2
    assert value(s, "xinference_completion_tokens_total", model="m", endpoint="ollama_chat") == 1
    # TTFT for every generation, streamed or not (a whole answer's as its replica timed it)
    assert value(s, "xinference_time_to_first_token_seconds_count", model="m", endpoint="chat") == 2
    assert value(s, "xinference_time_to_first_token_seconds_count", model="m", endpoint="ollama_chat") == 1
    assert value(s, "xinference_time_to_first_token_seconds_count", model="m", endpoint="completions") == 1
    assert value(s, "xinference_request_duration_seconds_count", model="m", endpoint="chat") == 2
    assert value(s, "xinference_request_duration_seconds_count", model="unknown", endpoint="chat") == 2
    assert 0 < value(s, "xinference_request_duration_seconds_sum", model="m", endpoint="chat") < 10
    # gauges from the cluster
    assert value(s, "xinference_model_info", model="m", model_name="gemma-3", model_type="LLM",
                 engine="llama.cpp") == 1
    assert value(s, "xinference_model_replicas", model="m", model_name="gemma-3", state="ready") == 1
    assert value(s, "xinference_running_requests", model="m", model_name="gemma-3") == 0
    assert value(s, "xinference_worker_memory_available_bytes", worker=stack.address) == 1


async def test_stream_usage_cached_tokens_and_slot_gauges(stack):
    await launch(stack, "m")
    slow = await swap_replica(stack.address, "m-0", delay=0.05)
    http = stack.http
    body = {"model": "m", "messages": MSG, "stream": True, "max_tokens": 40}
    long = asyncio.create_task(http.post("/v1/chat/completions", json=body))
    await wait_for(lambda: _active(slow, 1))
    s = await scrape(http)  # while the stream runs
    assert value(s, "xinference_slots_busy", model="m", model_name="gemma-3") == 1
    assert value(s, "xinference_slots_total", model="m", model_name="gemma-3") == SLOTS
    assert value(s, "xinference_running_requests", model="m", model_name="gemma-3") == 1
    assert value(s, "xinference_queued_requests", model="m", model_name="gemma-3") == 0
    assert (await long).status_code == 200

    s = await scrape(http)
    assert value(s, "xinference_slots_busy", model="m", model_name="gemma-3") == 0
    assert value(s, "xinference_prompt_tokens_total", model="m", endpoint="chat") == PROMPT_TOKENS
    assert value(s, "xinference_completion_tokens_total", model="m", endpoint="chat") == 40
    assert value(s, "xinference_cached_prompt_tokens_total", model="m", endpoint="chat") == CACHED_TOKENS
    assert value(s, "xinference_requests_total", model="m", endpoint="chat", status="200") == 1
    ttft = value(s, "xinference_time_to_first_token_seconds_sum", model="m", endpoint="chat")
    e2e = value(s, "xinference_request_duration_seconds_sum", model="m", endpoint="chat")
    assert 0.04 < ttft < e2e and e2e > 40 * 0.05 * 0.9


async def test_embedding_and_rerank_prompt_tokens(stack):
    await launch(stack, "m")
    await swap_replica(stack.address, "m-0")
    http = stack.http
    r = await http.post("/v1/embeddings", json={"model": "m", "input": ["abc", "de"]})
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == 5
    r = await http.post("/api/embed", json={"model": "m", "input": "abcd"})
    assert r.status_code == 200
    r = await http.post("/v1/rerank", json={"model": "m", "query": "q", "documents": ["ab", "c"],
                                            "return_len": True})
    assert r.status_code == 200
    s = await scrape(http)
    assert value(s, "xinference_prompt_tokens_total", model="m", endpoint="embeddings") == 5
    assert value(s, "xinference_prompt_tokens_total", model="m", endpoint="ollama_embed") == 4
    assert value(s, "xinference_prompt_tokens_total", model="m", endpoint="rerank") == 4
    for endpoint in ("embeddings", "ollama_embed", "rerank"):
        assert value(s, "xinference_requests_total", model="m", endpoint=endpoint, status="200") == 1
        assert value(s, "xinference_time_to_first_token_seconds_count", model="m", endpoint=endpoint) is None


async def test_a_429_counts_under_the_model(stack):
    await launch(stack, "m", request_limits=1)
    slow = await swap_replica(stack.address, "m-0", delay=0.05)
    http = stack.http
    long = asyncio.create_task(http.post("/v1/chat/completions", json={
        "model": "m", "messages": MSG, "stream": True, "max_tokens": 20}))
    await wait_for(lambda: _active(slow, 1))
    assert (await http.post("/v1/chat/completions", json={"model": "m", "messages": MSG})).status_code == 429
    assert (await long).status_code == 200
    s = await scrape(http)
    assert value(s, "xinference_requests_total", model="m", endpoint="chat", status="429") == 1
    assert value(s, "xinference_requests_total", model="m", endpoint="chat", status="200") == 1


async def test_replica_deaths_come_from_the_supervisor(stack):
    await launch(stack, "m", replica=2)
    s = await scrape(stack.http)
    assert value(s, "xinference_replica_deaths_total", model="m") is None
    # what a worker reports when a replica's process ends (WorkerActor.sub_pool_down)
    await stack.supervisor.replica_lost("m-1", "its process ended unexpectedly")
    await stack.supervisor.replica_lost("m-1", "reported twice")  # relaunching already: not counted again
    s = await scrape(stack.http)
    assert value(s, "xinference_replica_deaths_total", model="m") == 1
    # it is being relaunched (after a second)
    assert value(s, "xinference_model_replicas", model="m", model_name="gemma-3", state="total") == 2
    assert value(s, "xinference_model_replicas", model="m", model_name="gemma-3", state="ready") == 1


async def test_a_hung_or_vanished_replica_leaves_only_its_load_out(stack, monkeypatch):
    monkeypatch.setattr(replicas, "LOAD_TIMEOUT_S", 0.3)
    await launch(stack, "hung")
    await launch(stack, "gone")
    await launch(stack, "fine")
    await swap_replica(stack.address, "hung-0", describe_delay=30)
    await swap_replica(stack.address, "fine-0")
    http = stack.http
    for uid in ("hung", "gone", "fine"):  # each route known to the REST server
        assert (await http.post("/v1/completions", json={"model": uid, "prompt": "x"})).status_code == 200
    await stack.supervisor.terminate_model("gone")  # the REST server still has its route

    t0 = time.monotonic()
    s = await scrape(http)
    assert time.monotonic() - t0 < 2.0
    assert value(s, "xinference_slots_total", model="fine", model_name="gemma-3") == SLOTS
    assert value(s, "xinference_slots_total", model="hung", model_name="gemma-3") is None
    assert [labels for (name, labels) in s if name == "xinference_model_info"] == [
        (("engine", "llama.cpp"), ("model", uid), ("model_name", "gemma-3"), ("model_type", "LLM"))
        for uid in ("fine", "hung")]
    for uid in ("hung", "gone", "fine"):
        assert value(s, "xinference_requests_total", model=uid, endpoint="completions", status="200") == 1


async def test_worker_cpu_memory_and_gpu_gauges(stack):
    gpu = {"index": 0, "name": "H200", "memory_total": 100, "memory_used": 40, "memory_free": 60,
           "utilization": 0.25}
    status = {"cpu_count": 16, "cpu_usage": 0.5, "memory_total": 1000, "memory_available": 600,
              "gpus": [gpu, {**gpu, "index": 1, "utilization": 0.0}], "reserved_gpus": [1]}
    assert await stack.supervisor.heartbeat(stack.address, status, [])
    s = await scrape(stack.http)
    w = {"worker": stack.address}
    assert value(s, "xinference_worker_cpu_count", **w) == 16
    assert value(s, "xinference_worker_cpu_usage_ratio", **w) == 0.5
    assert value(s, "xinference_worker_memory_total_bytes", **w) == 1000
    assert value(s, "xinference_worker_memory_available_bytes", **w) == 600
    assert 0 <= value(s, "xinference_worker_heartbeat_age_seconds", **w) < 5
    g0, g1 = ({**w, "gpu": str(i), "gpu_name": "H200"} for i in (0, 1))
    assert value(s, "xinference_worker_gpu_utilization_ratio", **g0) == 0.25
    assert value(s, "xinference_worker_gpu_memory_used_bytes", **g0) == 40
    assert value(s, "xinference_worker_gpu_memory_total_bytes", **g1) == 100
    assert (value(s, "xinference_worker_gpu_reserved", **g0), value(s, "xinference_worker_gpu_reserved", **g1)) == (0, 1)


async def test_each_app_has_its_own_registry():
    async with running_stack() as a, running_stack() as b:
        await launch(a, "m")
        assert (await a.http.post("/v1/completions", json={"model": "m", "prompt": "x"})).status_code == 200
        sa, sb = await scrape(a.http), await scrape(b.http)
        assert value(sa, "xinference_requests_total", model="m", endpoint="completions", status="200") == 1
        assert not [k for k in sb if k[0] == "xinference_requests_total"]
