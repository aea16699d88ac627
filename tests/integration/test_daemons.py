"""Daemons as processes: clean shutdown on signals, and a supervisor with two workers."""

import signal

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


# SIGTERM: test_drain.py's graceful stop, which checks the same
@pytest.mark.parametrize("sig", [signal.SIGINT])
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
