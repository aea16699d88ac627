"""Prefix-aware routing with llama.cpp replicas: a multi-turn conversation against a
model with two replicas finds its history in the prefix cache (`cached_tokens`) as
often as against a model with one, because every turn goes to the replica that served
the one before."""

import requests

from tests.servers import start_local

SYSTEM = "You are a patient assistant who explains the sea, its tides and its animals. " * 4


def _conversation(endpoint, model, turns=4):
    history = [{"role": "system", "content": SYSTEM}]
    cached = []
    for i in range(turns):
        history.append({"role": "user", "content": f"Tell me one more thing about the sea, please ({i})."})
        r = requests.post(endpoint + "/v1/chat/completions", timeout=120, json={
            "model": model, "messages": history, "max_tokens": 12, "temperature": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        cached.append(body["usage"]["prompt_tokens_details"]["cached_tokens"])
        history.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
    return cached


def test_a_conversation_keeps_its_cache_hits_across_two_replicas(tmp_path):
    d = start_local(str(tmp_path))
    try:
        for uid, replica in (("one", 1), ("two", 2)):
            r = requests.post(d.endpoint + "/v1/models", timeout=180, json={
                "model_name": "gemma-3", "model_uid": uid, "replica": replica, "n_ctx": 1024, "n_parallel": 2})
            assert r.status_code == 200, r.text
        alone = _conversation(d.endpoint, "one")
        spread = _conversation(d.endpoint, "two")
        assert alone[0] == 0 and all(c > 50 for c in alone[1:]), alone
        assert spread == alone, (spread, alone)
        served = requests.get(d.endpoint + "/v1/models/two/replicas").json()
        assert sorted(s["served"] for s in served) == [0, 4]
        # another conversation with the same system text starts where that text is cached
        (first,) = _conversation(d.endpoint, "two", turns=1)
        assert first > 50, first
        served = requests.get(d.endpoint + "/v1/models/two/replicas").json()
        assert sorted(s["served"] for s in served) == [0, 5]
    finally:
        d.stop()
