"""What was launched survives a restart: xinference-local stopped and started again on
the same port brings its models back (relaunched, with their launch options and replica
count); --no-restore starts empty and forgets them; `xinference stop-cluster` stops
everything deliberately, and nothing comes back after it."""

import os
import signal
import subprocess

import requests

from tests.integration.test_daemons import FAST, _alive
from tests.servers import BIN, free_port, start, wait_http, wait_until


def _local(log_dir, port, *extra):
    d = start(["xinference-local", "-H", "127.0.0.1", "-p", str(port), "--no-ui", *extra], log_dir,
              f"local-{len(os.listdir(log_dir))}")
    d.endpoint = f"http://127.0.0.1:{port}"
    wait_http(d, d.endpoint + "/status")
    return d


def _models(endpoint):
    return {m["id"]: m for m in requests.get(endpoint + "/v1/models").json()["data"]}


def _ready(endpoint, uid):
    r = requests.get(f"{endpoint}/v1/models/{uid}")
    return r.status_code == 200 and r.json()["status"] == "READY" and all(x["ready"] for x in r.json()["replicas"])


def test_a_restarted_local_cluster_brings_its_models_back(tmp_path):
    log_dir, port = str(tmp_path), free_port()
    d = _local(log_dir, port)
    try:
        r = requests.post(d.endpoint + "/v1/models", timeout=120, json={
            "model_name": "gemma-3", "model_uid": "kept", "n_ctx": 256, "request_limits": 3})
        assert r.status_code == 200, r.text
        assert requests.post(d.endpoint + "/v1/models/kept/replicas", json={"count": 1}, timeout=120).status_code == 200
        r = requests.post(d.endpoint + "/v1/models", timeout=120, json={"model_name": "gemma-3", "model_uid": "gone",
                                                                      "n_ctx": 256})
        assert r.status_code == 200, r.text
        assert requests.delete(d.endpoint + "/v1/models/gone").status_code == 200
        assert d.stop() == 0

        d = _local(log_dir, port)
        wait_until(lambda: _ready(d.endpoint, "kept"), 120, what="kept relaunched")
        desc = requests.get(d.endpoint + "/v1/models/kept").json()
        assert desc["replica"] == 2 and desc["request_limits"] == 3 and desc["context_length"] == 256
        assert set(_models(d.endpoint)) == {"kept"}, "a terminated model stays terminated"
        events = requests.get(d.endpoint + "/v1/models/kept/events").json()["data"]
        assert [e["kind"] for e in events] == ["restored"], events
        chat = requests.post(d.endpoint + "/v1/chat/completions", json={
            "model": "kept", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert chat.status_code == 200, chat.text
        assert d.stop() == 0

        # --no-restore: starts empty, and the saved list is forgotten for later starts too
        d = _local(log_dir, port, "--no-restore")
        assert _models(d.endpoint) == {}
        assert d.stop() == 0
        d = _local(log_dir, port)
        assert _models(d.endpoint) == {}

        # xinference stop-cluster stops everything deliberately: nothing comes back
        r = requests.post(d.endpoint + "/v1/models", timeout=120, json={
            "model_name": "gemma-3", "model_uid": "g", "n_ctx": 256})
        assert r.status_code == 200, r.text
        replicas = [p.pid for p in d.tree()]
        out = subprocess.run([os.path.join(BIN, "xinference"), "stop-cluster", "-y", "-e", d.endpoint],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "Stopped 1 model(s) and 1 worker(s)" in out.stdout, out.stdout + out.stderr
        assert d.proc.wait(30) == 0, d.log()[-2000:]
        assert not _alive(replicas)
        d = _local(log_dir, port)
        assert _models(d.endpoint) == {}
    finally:
        d.stop(signal.SIGKILL)



def test_workers_find_a_supervisor_restarted_on_a_new_internal_port(tmp_path):
    """The supervisor dies and comes back on the same REST port but another internal
    port: the worker, its heartbeats failing, asks the REST endpoint where it is now and
    registers with the replica it kept running, which the supervisor adopts."""
    log_dir, port = str(tmp_path), free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = ["xinference-supervisor", "-H", "127.0.0.1", "-p", str(port), "--no-ui"]  # internal port: random
    sup = start(args, log_dir, "supervisor", FAST)
    worker = None
    try:
        wait_http(sup, endpoint + "/status")
        worker = start(["xinference-worker", "-e", endpoint, "-H", "127.0.0.1"], log_dir, "worker", FAST)
        wait_until(lambda: len(requests.get(endpoint + "/v1/workers").json()) == 1, 30, what="worker registered")
        r = requests.post(endpoint + "/v1/models", timeout=120, json={
            "model_name": "gemma-3", "model_uid": "kept", "n_ctx": 256})
        assert r.status_code == 200, r.text
        first = requests.get(endpoint + "/v1/address").json()
        replica_pids = [p.pid for p in worker.tree()]

        sup.stop(signal.SIGKILL)
        sup = start(args, log_dir, "supervisor-again", FAST)
        wait_http(sup, endpoint + "/status")
        assert requests.get(endpoint + "/v1/address").json() != first
        wait_until(lambda: _ready(endpoint, "kept"), 30, what="replica adopted")
        assert [p.pid for p in worker.tree()] == replica_pids, "the same process, not a relaunch"
        assert "the supervisor moved" in worker.log()
        # the replica is routable as soon as its worker registers; the restore that
        # records the event runs once the remembered workers are back
        wait_until(lambda: requests.get(endpoint + "/v1/models/kept/events").json()["data"], 15,
                   what="the restore event")
        events = requests.get(endpoint + "/v1/models/kept/events").json()["data"]
        assert [e["kind"] for e in events] == ["restored"] and "adopted 1" in events[0]["message"]
        chat = requests.post(endpoint + "/v1/chat/completions", json={
            "model": "kept", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert chat.status_code == 200, chat.text
    finally:
        if worker is not None:
            worker.stop(signal.SIGKILL)
        sup.stop(signal.SIGKILL)
