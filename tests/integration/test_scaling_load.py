"""Scaling a running model on a real server while requests keep coming: a replica
added joins the routing, a replica removed is drained and stopped, and no request in
between fails."""

import threading
import time

import requests

MSG = [{"role": "user", "content": "Name a colour."}]


def _load(endpoint, stop, results):
    body = {"model": "scaled", "messages": MSG, "max_tokens": 2, "temperature": 0}
    while not stop.is_set():
        r = requests.post(endpoint + "/v1/chat/completions", json=body, timeout=60)
        results.append((r.status_code, r.text if r.status_code != 200 else ""))


def test_scale_up_and_down_under_load_fails_no_request(api, local):
    r = requests.post(api + "/v1/models", timeout=120, json={
        "model_name": "gemma-3", "model_uid": "scaled", "n_ctx": 256, "n_parallel": 2,
        # one decode thread per replica: see test_drain's two-replica test
        "n_threads": 1})
    assert r.status_code == 200, r.text
    stop, results = threading.Event(), []
    clients = [threading.Thread(target=_load, args=(api, stop, results)) for _ in range(3)]
    try:
        for t in clients:
            t.start()
        time.sleep(1)
        r = requests.post(api + "/v1/models/scaled/replicas", json={"count": 1}, timeout=120)
        assert r.status_code == 200 and r.json()["added"] == ["scaled-1"], r.text
        added_at = len(results)
        time.sleep(3)  # longer than a REST server keeps a model's route (ROUTE_TTL_S)
        served = {s["replica_uid"]: s["served"] for s in requests.get(api + "/v1/models/scaled/replicas").json()}
        assert served.get("scaled-1", 0) > 0, ("the new replica takes requests", served, len(results) - added_at)
        r = requests.delete(api + "/v1/models/scaled/replicas/scaled-0", params={"drain_timeout": 20}, timeout=60)
        assert r.status_code == 200 and r.json()["replica"] == 1, r.text
        time.sleep(3)
        kinds = [e["kind"] for e in requests.get(api + "/v1/models/scaled/events").json()["data"]]
        assert kinds == ["added", "removed"], kinds
    finally:
        stop.set()
        for t in clients:
            t.join(60)
        requests.delete(api + "/v1/models/scaled")
    failed = [x for x in results if x[0] != 200]
    assert not failed, f"{len(failed)} of {len(results)} failed, first: {failed[0]}"
    assert len(results) > 20
