"""A graceful stop: on the first SIGTERM the server refuses new requests with a 503 and
Retry-After while the running ones finish, then exits; a second signal stops at once.
A worker told to stop takes its replicas out of the routing first: its running stream
finishes, no new request fails, and the supervisor relaunches the replica elsewhere."""

import json
import signal
import threading
import time

import requests

from tests.integration.test_daemons import FAST, _alive, _workers
from tests.servers import free_port, start, start_local, wait_http, wait_until

MSG = [{"role": "user", "content": "Tell me about the sea."}]


def _stream(endpoint, out, max_tokens, model="g"):
    """Appends (frames, whether the stream ended with [DONE])."""
    frames = []
    try:
        with requests.post(endpoint + "/v1/chat/completions", stream=True, timeout=120, json={
                "model": model, "messages": MSG, "max_tokens": max_tokens, "ignore_eos": True,
                "stream": True}) as r:
            for line in r.iter_lines():
                if line == b"data: [DONE]":
                    out.append((frames, True))
                    return
                if line.startswith(b"data: "):
                    frames.append(json.loads(line[6:]))
    except requests.RequestException:  # the server went away mid-stream
        pass
    out.append((frames, False))


def _started(endpoint, model="g"):
    return sum(s["inflight"] for s in requests.get(f"{endpoint}/v1/models/{model}/replicas").json())


def test_sigterm_lets_running_requests_finish_and_refuses_new_ones(tmp_path):
    d = start_local(str(tmp_path), None, "--shutdown-timeout", "60")
    try:
        r = requests.post(d.endpoint + "/v1/models", timeout=120, json={"model_name": "gemma-3", "model_uid": "g",
                                                                      "n_ctx": 1024})
        assert r.status_code == 200, r.text
        replicas = [p.pid for p in d.tree()]
        out: list = []
        t = threading.Thread(target=_stream, args=(d.endpoint, out, 300))
        t.start()
        wait_until(lambda: _started(d.endpoint), 20, what="the stream runs")
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        refused = requests.post(d.endpoint + "/v1/chat/completions", json={"model": "g", "messages": MSG})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5", refused.text
        assert refused.json()["error"]["type"] == "service_unavailable"
        ollama = requests.post(d.endpoint + "/api/generate", json={"model": "g", "prompt": "x"})
        assert ollama.status_code == 503 and "shutting down" in ollama.json()["error"]
        assert d.proc.poll() is None, "still serving the stream"
        t.join(120)
        frames, done = out[0]
        assert done and frames[-1]["choices"][0]["finish_reason"] == "length", frames[-1:]
        assert d.proc.wait(30) == 0, d.log()[-2000:]
        assert not _alive(replicas)
    finally:
        d.stop(signal.SIGKILL)


def test_a_second_signal_stops_at_once(tmp_path):
    d = start_local(str(tmp_path), None, "--shutdown-timeout", "600")
    try:
        r = requests.post(d.endpoint + "/v1/models", timeout=120, json={"model_name": "gemma-3", "model_uid": "g",
                                                                      "n_ctx": 4096})
        assert r.status_code == 200, r.text
        out: list = []
        t = threading.Thread(target=_stream, args=(d.endpoint, out, 4000))
        t.start()
        wait_until(lambda: _started(d.endpoint), 20, what="the stream runs")
        d.proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        assert d.proc.poll() is None
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(30) == 0
        assert time.monotonic() - t0 < 15
        t.join(30)
        assert out and not out[0][1], "the stream was cut, not finished"
    finally:
        d.stop(signal.SIGKILL)


def test_a_stopping_worker_drains_its_replica_and_it_moves_to_another(tmp_path):
    log_dir, port = str(tmp_path), free_port()
    endpoint = f"http://127.0.0.1:{port}"
    sup = start(["xinference-supervisor", "-H", "127.0.0.1", "-p", str(port), "--no-ui"], log_dir, "supervisor", FAST)
    workers = []
    try:
        wait_http(sup, endpoint + "/status")
        for i in range(2):
            workers.append(start(["xinference-worker", "-e", endpoint, "-H", "127.0.0.1", "--shutdown-timeout",
                                  "120"], log_dir, f"worker{i}", FAST))
        wait_until(lambda: len(_workers(endpoint)) == 2, 30, what="two workers registered")
        # one decode thread per replica: two replicas that each spin on both cores of a
        # 2-core machine slow each other down many times over (llama.cpp's threads
        # busy-wait), and this test is about draining, not speed
        r = requests.post(endpoint + "/v1/models", timeout=180, json={
            "model_name": "gemma-3", "model_uid": "g", "replica": 2, "n_ctx": 2048, "n_threads": 1})
        assert r.status_code == 200, r.text
        out: list = []
        streams = [threading.Thread(target=_stream, args=(endpoint, out, 150)) for _ in range(2)]
        for t in streams:
            t.start()
            time.sleep(0.3)
        wait_until(lambda: sorted(s["inflight"] for s in requests.get(endpoint + "/v1/models/g/replicas").json())
                   == [1, 1], 20, what="a stream on each replica")
        workers[0].proc.send_signal(signal.SIGTERM)
        # new requests keep being answered while the worker drains (how many fit in a
        # given time depends on the machine, so a count, not a rate)
        codes = [requests.post(endpoint + "/v1/chat/completions", timeout=60,
                               json={"model": "g", "messages": MSG, "max_tokens": 2}).status_code
                 for _ in range(3)]
        assert codes == [200] * 3, codes
        for t in streams:
            t.join(120)
        assert [done for _, done in out] == [True, True], "both streams finished, the draining one too"
        assert workers[0].proc.wait(60) == 0, workers[0].log()[-2000:]
        survivor = _workers(endpoint)[0]["worker_address"]
        wait_until(lambda: [(x["worker_address"], x["ready"]) for x in requests.get(endpoint + "/v1/models/g").json()[
            "replicas"]] == [(survivor, True)] * 2, 60, what="the replica relaunched on the other worker")
    finally:
        for w in workers:
            w.stop(signal.SIGKILL)
        sup.stop(signal.SIGKILL)
