"""GET /metrics and abort by request id on a real local cluster with the embedded
Gemma (uid `gemma`): the counters move with a real chat, and the real
xinference-client's abort_request ends a long stream at once and frees its slot."""

import json
import threading
import time
from typing import Dict, List, Optional, Tuple

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GEMMA_UID
from tests.servers import wait_until

xc = pytest.importorskip("xinference_client")

pytestmark = pytest.mark.timeout(180)

ASK = [{"role": "user", "content": "Count to one hundred."}]


def scrape(api: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    r = requests.get(api + "/metrics", timeout=30)
    assert r.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_move_with_a_real_chat(api):
    before = scrape(api)
    r = requests.post(api + "/v1/chat/completions", timeout=60, json={
        "model": GEMMA_UID, "messages": ASK, "max_tokens": 8, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True}})
    assert r.status_code == 200
    usage = [json.loads(line[6:])["usage"] for line in r.text.splitlines()
             if line.startswith("data: {") and '"usage"' in line][-1]
    after = scrape(api)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"model": GEMMA_UID, "endpoint": "chat"}
    assert moved("xinference_requests_total", status="200", **chat) == 1
    assert moved("xinference_prompt_tokens_total", **chat) == usage["prompt_tokens"] > 0
    assert moved("xinference_completion_tokens_total", **chat) == usage["completion_tokens"] == 8
    assert moved("xinference_time_to_first_token_seconds_count", **chat) == 1
    assert moved("xinference_request_duration_seconds_count", **chat) == 1
    assert value(after, "xinference_model_info", model=GEMMA_UID, model_name="gemma-3", model_type="LLM",
                 engine="llama.cpp") == 1
    assert value(after, "xinference_slots_total", model=GEMMA_UID, model_name="gemma-3") > 0
    workers = [labels for name, labels in after if name == "xinference_worker_memory_total_bytes"]
    assert len(workers) == 1
    assert value(after, "xinference_worker_memory_total_bytes", **dict(workers[0])) > 2**30


def test_abort_request_by_id_with_the_real_client(api):
    rid = f"abort-{time.time_ns()}"
    frames: List[str] = []
    first = threading.Event()
    ended: List[Optional[float]] = [None]

    def stream() -> None:
        with requests.post(api + "/v1/chat/completions", stream=True, timeout=120,
                           headers={"X-Request-Id": rid},
                           json={"model": GEMMA_UID, "messages": ASK, "max_tokens": 400,
                                 "ignore_eos": True, "temperature": 0, "stream": True}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith(b"data: "):
                    frames.append(line[6:].decode())
                    if '"content"' in frames[-1] and len(frames) > 2:
                        first.set()
        ended[0] = time.monotonic()

    before = scrape(api)
    t = threading.Thread(target=stream)
    t.start()
    assert first.wait(60), "the stream never started"
    client = xc.RESTfulClient(api)
    aborted_at = time.monotonic()
    assert client.abort_request(GEMMA_UID, rid) == {}
    t.join(30)
    assert not t.is_alive()
    assert ended[0] is not None and ended[0] - aborted_at < 3.0
    last = json.loads(frames[-1])
    assert last["error"]["code"] == "request_aborted"
    assert "[DONE]" not in frames
    deltas = sum(1 for f in frames if f.startswith("{") and '"choices": [{' in f)
    assert deltas < 400  # it stopped well before max_tokens

    # the slot is free again and the replica serves the next request
    wait_until(lambda: requests.get(api + f"/v1/models/{GEMMA_UID}", timeout=10).json().get("slots_busy") == 0,
               10, what="slots_busy 0")
    r = requests.post(api + "/v1/chat/completions", timeout=60, json={
        "model": GEMMA_UID, "messages": ASK, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
    after = scrape(api)
    assert value(after, "xinference_requests_total", model=GEMMA_UID, endpoint="chat", status="409") - value(
        before, "xinference_requests_total", model=GEMMA_UID, endpoint="chat", status="409") == 1
    # abort after the end, and for an unknown model
    assert client.abort_request(GEMMA_UID, rid, block_duration=0) == {}
    with pytest.raises(RuntimeError, match="not found|no-such"):
        client.abort_request("no-such-model", rid)


def test_our_client_blocks_an_id_before_its_request_arrives(api):
    from xinference.client import Client

    rid = f"blocked-{time.time_ns()}"
    with Client(api) as client:
        assert client.abort_request(GEMMA_UID, rid, block_duration=30) == {}
    r = requests.post(api + "/v1/chat/completions", headers={"X-Request-Id": rid}, timeout=60, json={
        "model": GEMMA_UID, "messages": ASK, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 409 and r.json()["error"]["code"] == "request_aborted", r.text
    assert r.headers["X-Request-Id"] == rid
