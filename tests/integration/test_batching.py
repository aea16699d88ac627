"""Continuous batching through the REST API: slots, prefix reuse, the bounded queue."""

import threading
import time

import requests

from tests.conftest import GEMMA_UID
from tests.servers import wait_until

LONG = {"prompt": "1, 2, 3, 4, 5,", "temperature": 0}  # greedy runs to max_tokens


def _describe(api, uid=GEMMA_UID):
    r = requests.get(f"{api}/v1/models/{uid}")
    assert r.status_code == 200, r.text
    return r.json()


def test_describe_reports_slots_and_queue(api):
    d = _describe(api)
    assert d["slots_total"] >= 1
    assert d["slots_busy"] + d["slots_free"] == d["slots_total"]
    assert d["queue_length"] == 0
    rows = requests.get(f"{api}/v1/models/{GEMMA_UID}/replicas").json()
    assert rows[0]["slots_total"] == d["slots_total"]


def test_concurrent_streams_all_finish_with_their_own_lengths(api):
    results = {}

    def run(i):
        body = {"model": GEMMA_UID, "prompt": f"Story {i}:", "max_tokens": 8 + i, "ignore_eos": True,
                "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
        with requests.post(f"{api}/v1/completions", json=body, stream=True, timeout=120) as r:
            lines = [x for x in r.iter_lines() if x.startswith(b"data: ")]
        results[i] = (r.status_code, lines)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    for i in range(8):
        status, lines = results[i]
        assert status == 200 and lines[-1] == b"data: [DONE]"
        assert f'"completion_tokens": {8 + i},'.encode() in lines[-2]


def test_next_chat_turn_reports_cached_prompt_tokens(api):
    turn1 = [{"role": "user", "content": "Name three rivers in Europe, please."}]
    first = requests.post(f"{api}/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": turn1, "max_tokens": 16, "temperature": 0}).json()
    reply = first["choices"][0]["message"]["content"]
    turn2 = turn1 + [{"role": "assistant", "content": reply}, {"role": "user", "content": "And in Asia?"}]
    second = requests.post(f"{api}/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": turn2, "max_tokens": 4, "temperature": 0}).json()
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"]
    assert cached < second["usage"]["prompt_tokens"]


def test_full_queue_429_timeout_503_and_a_freed_slot_serves_the_next(api):
    r = requests.post(f"{api}/v1/models", json={
        "model_name": "gemma-3", "model_uid": "one-slot", "n_ctx": 1024, "n_parallel": 1,
        "max_queue": 1, "queue_timeout_s": 2})
    assert r.status_code == 200, r.text
    try:
        assert _describe(api, "one-slot")["slots_total"] == 1
        body = {"model": "one-slot", **LONG, "max_tokens": 900, "stream": True}
        running = requests.post(f"{api}/v1/completions", json=body, stream=True)
        lines = running.iter_lines()  # keep it referenced: the connection stays open
        assert next(lines).startswith(b"data: ")
        waited = {}

        def wait():
            waited["r"] = requests.post(f"{api}/v1/completions", json={**body, "stream": False,
                                                                        "max_tokens": 2})

        waiter = threading.Thread(target=wait)
        waiter.start()
        wait_until(lambda: _describe(api, "one-slot")["queue_length"] == 1, 5, 0.05, "one waiting")
        full = requests.post(f"{api}/v1/completions", json={**body, "stream": False, "max_tokens": 2})
        assert full.status_code == 429, full.text
        assert full.headers["Retry-After"] and "max_queue" in full.json()["detail"]
        assert full.json()["error"]["type"] == "rate_limit_error"
        waiter.join(10)
        late = waited["r"]
        assert late.status_code == 503, late.text
        assert late.headers["Retry-After"] and "queue_timeout_s" in late.json()["error"]["message"]
        # the running stream's client goes away: its slot frees within a step
        running.close()
        wait_until(lambda: _describe(api, "one-slot")["slots_busy"] == 0, 3, 0.05, "slot freed")
        start = time.monotonic()
        ok = requests.post(f"{api}/v1/completions", json={**body, "stream": False, "max_tokens": 3})
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3
        assert time.monotonic() - start < 5
    finally:
        requests.delete(f"{api}/v1/models/one-slot")
