"""Daemons as processes: clean shutdown on signals, and a supervisor with two workers."""

import os
import signal
import time

import psutil
import pytest
import requests

from tests.servers import free_port, start, start_local, wait_http, wait_until

FAST = {"XINFERENCE_HEARTBEAT_INTERVAL": "0.5"}


def _alive(pids):
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_shuts_down_local_cluster_without_orphans(tmp_path, sig):
    d = start_local(str(tmp_path))
    try:
        r = requests.post(d.endpoint + "/v1/models", json={"model_name": "gemma-3", "n_ctx": 256}, timeout=120)
        assert r.status_code == 200, r.text
        tree = [p.pid for p in d.tree()]
        assert tree, "the replica runs in a sub-process"
        d.proc.send_signal(sig)
        code = d.proc.wait(30)
        assert code == 0, d.log()
        wait_until(lambda: not _alive(tree), 10, what="no process left")
        assert "shutting down" in d.log()
    finally:
        d.stop(signal.SIGKILL)


def _workers(endpoint):
    return requests.get(endpoint + "/v1/workers").json()


def test_supervisor_two_workers_replicas_and_worker_loss(tmp_path):
    log_dir = str(tmp_path)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**FAST}
    sup = start(["xinference-supervisor", "-H", "127.0.0.1", "-p", str(port), "--worker-timeout", "3", "--no-ui"],
                log_dir, "supervisor", env)
    workers = []
    try:
        wait_http(sup, endpoint + "/status")
        for i in range(2):
            workers.append(start(["xinference-worker", "-e", endpoint, "-H", "127.0.0.1"], log_dir, f"worker{i}", env))
        wait_until(lambda: len(_workers(endpoint)) == 2, 30, what="two workers registered")

        r = requests.post(endpoint + "/v1/models", timeout=180,
                          json={"model_name": "gemma-3", "model_uid": "g2", "replica": 2, "n_ctx": 256})
        assert r.status_code == 200, r.text + sup.log()
        desc = requests.get(endpoint + "/v1/models/g2").json()
        assert desc["replica"] == 2
        hosts = {rep["worker_address"] for rep in desc["replicas"]}
        assert hosts == {w["worker_address"] for w in _workers(endpoint)}, "one replica on each worker"

        body = {"model": "g2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 0}
        for _ in range(4):
            assert requests.post(endpoint + "/v1/chat/completions", json=body).status_code == 200
        # idle replicas take turns
        stats = requests.get(endpoint + "/v1/models/g2/replicas").json()
        assert sorted(s["served"] for s in stats) == [2, 2]
        assert all(s["inflight"] == 0 for s in stats)

        # kill one worker hard: it stops heart-beating
        victim = workers[0]
        victim_address = next(rep["worker_address"] for rep in desc["replicas"]
                              if _owns(victim, rep["worker_address"]))
        orphans = [p.pid for p in victim.tree()]
        assert orphans, "the victim's replica runs in its own process"
        os.kill(victim.pid, signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: victim_address not in [w["worker_address"] for w in _workers(endpoint)],
                   10, what="dead worker dropped")
        assert time.monotonic() - t0 < 10
        # its replica is relaunched on the other worker; the model keeps answering meanwhile
        for _ in range(4):
            r = requests.post(endpoint + "/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
        survivor = next(rep["worker_address"] for rep in desc["replicas"] if rep["worker_address"] != victim_address)
        wait_until(lambda: [(r["worker_address"], r["ready"]) for r in requests.get(endpoint + "/v1/models/g2").json()[
            "replicas"]] == [(survivor, True)] * 2, 60, what="the lost replica relaunched on the other worker")
        listed = requests.get(endpoint + "/v1/models").json()["data"]
        assert [m["replica"] for m in listed if m["id"] == "g2"] == [2]
        # the dead worker's replica process ends itself
        wait_until(lambda: not _alive(orphans), 10, what="orphan replica exits")

        # SIGTERM on the last worker: it stops its replica and leaves at once
        last = workers[1]
        replica_pids = [p.pid for p in last.tree()]
        assert replica_pids
        last.proc.send_signal(signal.SIGTERM)
        assert last.proc.wait(30) == 0, last.log()
        assert not _alive(replica_pids)
        assert _workers(endpoint) == []
        # with no worker left to relaunch them on, the replicas are given up (after 1+2+4 s)
        wait_until(lambda: requests.get(endpoint + "/v1/models/g2").status_code == 404, 20,
                   what="model dropped")
        gone = requests.get(endpoint + "/v1/models/g2")
        assert "shut down" in gone.json()["detail"] and "no worker can take it" in gone.json()["detail"]
    finally:
        for w in workers:
            w.stop(signal.SIGKILL)
        sup.stop(signal.SIGKILL)


def _owns(daemon, worker_address):
    port = int(worker_address.rsplit(":", 1)[1])
    try:
        return any(c.laddr.port == port for c in psutil.Process(daemon.pid).net_connections("tcp")
                   if c.status == psutil.CONN_LISTEN)
    except psutil.NoSuchProcess:
        return False


def test_restarted_supervisor_adopts_running_replicas(tmp_path):
    """The supervisor crashes and comes back on the same ports: the worker registers
    again with the replica it kept running, and the model is served as before."""
    log_dir = str(tmp_path)
    port, sup_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{port}"
    args = ["xinference-supervisor", "-H", "127.0.0.1", "-p", str(port), "--supervisor-port", str(sup_port),
            "--no-ui"]
    sup = start(args, log_dir, "supervisor", FAST)
    worker = None
    try:
        wait_http(sup, endpoint + "/status")
        worker = start(["xinference-worker", "-e", endpoint, "-H", "127.0.0.1"], log_dir, "worker", FAST)
        wait_until(lambda: len(_workers(endpoint)) == 1, 30, what="worker registered")
        r = requests.post(endpoint + "/v1/models", timeout=120, json={
            "model_name": "gemma-3", "model_uid": "kept", "n_ctx": 256, "request_limits": 3})
        assert r.status_code == 200, r.text
        replica_pids = [p.pid for p in worker.tree()]

        sup.stop(signal.SIGKILL)
        sup = start(args, log_dir, "supervisor-again", FAST)
        wait_http(sup, endpoint + "/status")
        wait_until(lambda: "kept" in [m["id"] for m in requests.get(endpoint + "/v1/models").json()["data"]],
                   30, what="replica adopted")
        desc = requests.get(endpoint + "/v1/models/kept").json()
        assert desc["status"] == "READY" and desc["request_limits"] == 3 and desc["context_length"] == 256
        assert [p.pid for p in worker.tree()] == replica_pids, "the same process, not a relaunch"
        chat = requests.post(endpoint + "/v1/chat/completions", json={
            "model": "kept", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert chat.status_code == 200, chat.text
    finally:
        if worker is not None:
            worker.stop(signal.SIGKILL)
        sup.stop(signal.SIGKILL)
