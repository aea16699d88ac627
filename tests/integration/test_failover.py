"""Failover with real daemons: a model with a replica on each of two workers, one worker
killed with SIGKILL. Requests sent back to back for the next 45 s, streamed and not,
all succeed: the REST server takes the dead replica out at its first failed call and
sends the request to the other one, long before the supervisor notices the silent
worker. A stream running on the dead replica ends with an error frame, not a hang.
Then the lost replica runs again on the surviving worker, the dead worker's replica
process ends itself, and a SIGTERM to the last worker stops its replicas: with no
worker left the model is given up and says why."""

import json
import os
import signal
import threading
import time

import requests

from tests.integration.test_daemons import FAST, _alive, _owns, _workers
from tests.servers import free_port, start, wait_http, wait_until

LOAD_S = 45.0
MSG = [{"role": "user", "content": "Tell me about the sea."}]


def _stream(endpoint, body, timeout):
    """(frames, whether the stream ended with [DONE]) of one streamed chat."""
    frames = []
    with requests.post(endpoint + "/v1/chat/completions", json={**body, "stream": True},
                       stream=True, timeout=timeout) as r:
        if r.status_code != 200:
            return [{"status": r.status_code, "body": r.text}], False
        for line in r.iter_lines():
            if line == b"data: [DONE]":
                return frames, True
            if line.startswith(b"data: "):
                frames.append(json.loads(line[6:]))
    return frames, False


def _long_stream(endpoint, out):
    frames, done = _stream(endpoint, {"model": "g2", "messages": MSG, "max_tokens": 400,
                                      "ignore_eos": True, "temperature": 0}, 60)
    out.append((frames, done, time.monotonic()))


def test_killing_a_worker_fails_no_request(tmp_path):
    log_dir = str(tmp_path)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # the default worker timeout (30 s): the supervisor still lists the dead replica for
    # most of the load below, so it is the REST server that must route around it
    sup = start(["xinference-supervisor", "-H", "127.0.0.1", "-p", str(port), "--no-ui"], log_dir, "supervisor", FAST)
    workers = []
    try:
        wait_http(sup, endpoint + "/status")
        for i in range(2):
            workers.append(start(["xinference-worker", "-e", endpoint, "-H", "127.0.0.1"],
                                 log_dir, f"worker{i}", FAST))
        wait_until(lambda: len(_workers(endpoint)) == 2, 30, what="two workers registered")
        # one decode thread per replica: see test_drain's two-replica test
        r = requests.post(endpoint + "/v1/models", timeout=180, json={
            "model_name": "gemma-3", "model_uid": "g2", "replica": 2, "n_ctx": 4096, "n_threads": 1})
        assert r.status_code == 200, r.text + sup.log()
        desc = requests.get(endpoint + "/v1/models/g2").json()
        hosts = {rep["worker_address"] for rep in desc["replicas"]}
        assert hosts == {w["worker_address"] for w in _workers(endpoint)}, "one replica on each worker"
        body = {"model": "g2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}
        for _ in range(4):
            assert requests.post(endpoint + "/v1/chat/completions", json=body).status_code == 200
        stats = requests.get(endpoint + "/v1/models/g2/replicas").json()
        assert sorted(s["served"] for s in stats) == [2, 2], "idle replicas take turns"
        victim = workers[0]
        victim_address = next(rep["worker_address"] for rep in desc["replicas"]
                              if _owns(victim, rep["worker_address"]))
        orphans = [p.pid for p in victim.tree()]
        assert orphans, "the victim's replica runs in its own process"

        # one long stream on each replica (the least busy one takes the second)
        long_streams: list = []
        runners = [threading.Thread(target=_long_stream, args=(endpoint, long_streams)) for _ in range(2)]
        for t in runners:
            t.start()
            time.sleep(0.5)
        wait_until(lambda: sorted(s["inflight"] for s in requests.get(
            endpoint + "/v1/models/g2/replicas").json()) == [1, 1], 20, what="a stream on each replica")

        os.kill(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        sent, failed = 0, []
        while time.monotonic() - killed < LOAD_S:
            body = {"model": "g2", "messages": MSG, "max_tokens": 2, "temperature": 0}
            if sent % 2:
                frames, done = _stream(endpoint, body, 30)
                if not done or any("error" in f or "status" in f for f in frames):
                    failed.append(frames)
            else:
                r = requests.post(endpoint + "/v1/chat/completions", json=body, timeout=30)
                if r.status_code != 200:
                    failed.append((r.status_code, r.text))
            sent += 1
        assert not failed, f"{len(failed)} of {sent} failed, first: {failed[0]}"
        assert sent > 50, sent
        # the supervisor dropped the silent worker meanwhile, and relaunched its replica
        # on the other worker
        assert victim_address not in [w["worker_address"] for w in _workers(endpoint)]
        survivor = _workers(endpoint)[0]["worker_address"]
        desc = wait_until(lambda: (lambda d: d if all(r["ready"] for r in d["replicas"]) else None)(
            requests.get(endpoint + "/v1/models/g2").json()), 60, what="the lost replica relaunched")
        assert {r["worker_address"] for r in desc["replicas"]} == {survivor}
        assert desc["replica"] == 2 and desc["restarts"] == 1
        kinds = [e["kind"] for e in requests.get(endpoint + "/v1/models/g2/events").json()["data"]]
        assert kinds == ["worker_lost", "relaunching", "relaunched"], kinds

        for t in runners:
            t.join(60)
        assert len(long_streams) == 2
        ended = sorted(long_streams, key=lambda s: s[1])
        cut, whole = ended
        assert not cut[1] and "error" in cut[0][-1], (
            f"the dead replica's stream: {cut[0][-1:]} {[(len(f), d, t) for f, d, t in long_streams]} {killed}")
        assert "went away" in cut[0][-1]["error"]["message"]
        assert whole[1] and whole[0][-1]["choices"][0]["finish_reason"] == "length"
        wait_until(lambda: not _alive(orphans), 10, what="the dead worker's replica exits")

        # SIGTERM on the last worker: it stops its replicas and leaves
        last = workers[1]
        replica_pids = [p.pid for p in last.tree()]
        assert len(replica_pids) >= 2
        last.proc.send_signal(signal.SIGTERM)
        assert last.proc.wait(60) == 0, last.log()[-2000:]
        assert not _alive(replica_pids) and _workers(endpoint) == []
        # with no worker left to relaunch them on, the replicas are given up (after 1+2+4 s)
        wait_until(lambda: requests.get(endpoint + "/v1/models/g2").status_code == 404, 30,
                   what="model dropped")
        gone = requests.get(endpoint + "/v1/models/g2").json()["detail"]
        assert "no worker can take it" in gone, gone
    finally:
        for w in workers:
            w.stop(signal.SIGKILL)
        sup.stop(signal.SIGKILL)

