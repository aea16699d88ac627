"""Launching catalogue models by name from a fake Hugging Face hub and a fake ModelScope
on 127.0.0.1: progress, the cache, one download for two launches, cancel and resume,
clear errors, with a real xinference-local and the real hub clients.

The hubs serve the embedded Gemma GGUF (250 MB, loadable) under the file names the
catalogue gives Qwen2.5-0.5B-Instruct, so launching `qwen2.5-instruct` by name downloads
real weights and serves them.
"""

import os
import re
import signal
import time

import psutil
import pytest
import requests

from tests.fake_hub import FakeHub
from tests.fake_modelscope import FakeModelScope
from tests.servers import start_local, wait_until

xc = pytest.importorskip("xinference_client")

REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
MS_REPO = "qwen/Qwen2.5-0.5B-Instruct-GGUF"
QUANTS = ("q4_k_m", "q8_0", "q4_0", "q5_0", "q6_k", "q5_k_m", "q3_k_m")
# bytes a hub sent that a killed or cancelled download never wrote: socket buffers and
# the last unwritten 1 MiB step
IN_FLIGHT = 8 << 20


def gguf_name(quant: str) -> str:
    return f"qwen2.5-0.5b-instruct-{quant}.gguf"


def version(quant: str) -> str:
    return f"qwen2.5-instruct--0_5B-ggufv2-{quant}"


@pytest.fixture(scope="module")
def gemma_file():
    from xinference.model.llm.launch import plan_launch

    return plan_launch("gemma-3").resolve_weights()


@pytest.fixture(scope="module")
def hubs(gemma_file):
    with FakeHub() as hub, FakeModelScope() as ms:
        hub.add_repo(REPO, {gguf_name(q): gemma_file for q in QUANTS})
        ms.add_repo(MS_REPO, {gguf_name("q6_k"): gemma_file})
        yield hub, ms


def _env(hubs, home):
    hub, ms = hubs
    return {**hub.env, **ms.env, "XINFERENCE_HOME": str(home)}


@pytest.fixture(scope="module")
def server(hubs, log_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("download-home")
    daemon = start_local(log_dir, _env(hubs, home))
    daemon.extra["home"] = str(home)
    try:
        yield daemon
    finally:
        daemon.stop()


def launch(endpoint, quant, uid, wait=True, **extra):
    body = {"model_name": "qwen2.5-instruct", "model_format": "ggufv2", "model_size_in_billions": "0_5",
            "quantization": quant, "model_uid": uid, "n_ctx": 512, **extra}
    return requests.post(endpoint + "/v1/models", json=body, params=None if wait else {"wait_ready": "false"},
                         timeout=300)


def progress(endpoint, uid):
    return requests.get(f"{endpoint}/v1/models/{uid}/progress", timeout=10).json()


def replica_processes(daemon):
    return [p for p in daemon.tree() if "xoscar" in " ".join(p.cmdline())]


def gets(hub, quant):
    return [r.range for r in hub.requests if r.method == "GET" and gguf_name(quant) in r.path]


def test_launch_by_name_downloads_with_progress_then_serves(server, hubs, gemma_file):
    hub, _ = hubs
    size = os.path.getsize(gemma_file)
    hub.throttle(40_000_000)
    try:
        assert launch(server.endpoint, "q4_k_m", "qwen", wait=False).status_code == 200
        reports = []
        while (report := progress(server.endpoint, "qwen"))["stage"] != "ready":
            reports.append(report)
            time.sleep(0.3)
    finally:
        hub.throttle(None)
    downloading = [r for r in reports if r["stage"] == "downloading" and "download" in r["replicas"][0]]
    assert downloading, reports
    moving = [r["replicas"][0]["download"] for r in downloading]
    assert all(d["total_bytes"] == size and d["repo"] == REPO for d in moving)
    assert any(0 < d["downloaded_bytes"] < size and d["speed_bytes_per_s"] > 1e6 and d["eta_s"] for d in moving)
    assert all(0 <= r["progress"] <= 0.8 for r in downloading)
    assert hub.bytes_served(REPO, gguf_name("q4_k_m")) == size
    # it serves
    out = requests.post(server.endpoint + "/v1/completions", json={
        "model": "qwen", "prompt": "1, 2, 3,", "max_tokens": 3, "temperature": 0}, timeout=60)
    assert out.status_code == 200 and out.json()["usage"]["completion_tokens"] > 0
    desc = requests.get(server.endpoint + "/v1/models/qwen", timeout=10).json()
    assert desc["model_version"] == version("q4_k_m") and desc["model_hub"] == "huggingface"
    # the cache has it, and a second launch takes it from there
    client = xc.RESTfulClient(server.endpoint)
    cached = client.list_cached_models()
    row = next(r for r in cached if r["model_version"] == version("q4_k_m"))
    assert row["model_name"] == "qwen2.5-instruct" and row["quantization"] == "q4_k_m"
    assert row["size_bytes"] >= size and row["hub"] == "huggingface" and row["path"].startswith(server.extra["home"])
    assert launch(server.endpoint, "q4_k_m", "qwen-again").status_code == 200
    assert hub.bytes_served(REPO, gguf_name("q4_k_m")) == size
    for uid in ("qwen", "qwen-again"):
        client.terminate_model(uid)


def test_two_launches_of_one_version_download_it_once(server, hubs, gemma_file):
    hub, _ = hubs
    hub.throttle(60_000_000)
    try:
        for uid in ("twin-a", "twin-b"):
            assert launch(server.endpoint, "q8_0", uid, wait=False).status_code == 200
        stages = set()
        for _ in range(200):
            reports = [progress(server.endpoint, uid) for uid in ("twin-a", "twin-b")]
            stages |= {r["stage"] for r in reports}
            if all(r["stage"] == "ready" for r in reports):
                break
            time.sleep(0.2)
    finally:
        hub.throttle(None)
    assert "waiting_for_download" in stages, stages
    assert hub.bytes_served(REPO, gguf_name("q8_0")) == os.path.getsize(gemma_file)
    for uid in ("twin-a", "twin-b"):
        requests.delete(f"{server.endpoint}/v1/models/{uid}", timeout=30)


def test_cancel_mid_download_leaves_nothing_and_the_next_launch_resumes(server, hubs, gemma_file):
    hub, _ = hubs
    size = os.path.getsize(gemma_file)
    before = len(replica_processes(server))
    hub.throttle(20_000_000)
    try:
        assert launch(server.endpoint, "q4_0", "cancelled", wait=False).status_code == 200
        wait_until(lambda: (progress(server.endpoint, "cancelled")["replicas"][0].get("download") or {})
                   .get("downloaded_bytes", 0) > 10_000_000, 60, what="download under way")
        xc.RESTfulClient(server.endpoint).cancel_launch_model("cancelled")
    finally:
        hub.throttle(None)
    gone = requests.get(server.endpoint + "/v1/models/cancelled", timeout=10)
    assert gone.status_code == 404 and "cancelled" in gone.json()["detail"]
    wait_until(lambda: len(replica_processes(server)) == before, 10, what="replica process ended")
    served = hub.bytes_served(REPO, gguf_name("q4_0"))
    assert served < size
    partial = os.path.join(server.extra["home"], "cache", version("q4_0"), gguf_name("q4_0") + ".incomplete")
    assert os.path.getsize(partial) > 0
    # a cancel of something not launching is a clear error
    r = requests.post(server.endpoint + "/v1/models/cancelled/cancel", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["message"]
    # the next launch fetches only the rest: what was sent but never reached the disk
    # (socket buffers, the last 1 MiB step) is a few MB, not the file again
    assert launch(server.endpoint, "q4_0", "resumed").status_code == 200
    assert gets(hub, "q4_0")[-1].startswith("bytes=")
    assert hub.bytes_served(REPO, gguf_name("q4_0")) <= size + IN_FLIGHT
    requests.delete(server.endpoint + "/v1/models/resumed", timeout=30)


def test_missing_repo_or_file_is_a_clear_400_at_once(server):
    before = len(replica_processes(server))
    started = time.monotonic()
    r = launch(server.endpoint, "q2_k", "no-file")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "file_not_found" and gguf_name("q2_k") in err["message"] and REPO in err["message"]
    client = xc.RESTfulClient(server.endpoint)
    spec = {"version": 2, "context_length": 2048, "model_name": "nowhere-llm", "model_lang": ["en"],
            "model_ability": ["generate"], "model_specs": [{
                "model_format": "ggufv2", "model_size_in_billions": 1, "quantization": "q4_k_m",
                "model_id": "acme/does-not-exist", "model_hub": "huggingface",
                "model_file_name_template": "x-{quantization}.gguf"}]}
    import json

    client.register_model("LLM", json.dumps(spec), persist=False)
    r = requests.post(server.endpoint + "/v1/models", json={"model_name": "nowhere-llm"}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == "repo_not_found"
    assert "acme/does-not-exist" in r.json()["detail"]
    assert time.monotonic() - started < 20
    client.unregister_model("LLM", "nowhere-llm")
    wait_until(lambda: len(replica_processes(server)) == before, 10, what="no process left")


def test_modelscope_download(server, hubs, gemma_file):
    _, ms = hubs
    # a version not cached yet (a cached one is used whichever hub it came from)
    r = launch(server.endpoint, "q6_k", "from-ms", download_hub="modelscope")
    assert r.status_code == 200, r.text
    assert ms.bytes_served(MS_REPO, gguf_name("q6_k")) == os.path.getsize(gemma_file)
    assert hubs[0].bytes_served(REPO, gguf_name("q6_k")) == 0
    desc = requests.get(server.endpoint + "/v1/models/from-ms", timeout=10).json()
    assert desc["model_hub"] == "modelscope"
    requests.delete(server.endpoint + "/v1/models/from-ms", timeout=30)
    bad = launch(server.endpoint, "q4_k_m", "bad-hub", download_hub="civitai")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "download_hub"


def test_cache_routes_through_xinference_client(server):
    client = xc.RESTfulClient(server.endpoint)
    v = version("q4_k_m")
    assert launch(server.endpoint, "q4_k_m", "in-use").status_code == 200
    files = client.list_deletable_models(v)
    assert files["model_version"] == v and any(p.endswith(gguf_name("q4_k_m")) for p in files["paths"])
    with pytest.raises(RuntimeError, match="in-use"):
        client.confirm_and_remove_model(v)  # a running replica uses it
    client.terminate_model("in-use")
    assert client.confirm_and_remove_model(v) is True
    assert v not in [r["model_version"] for r in client.list_cached_models()]
    with pytest.raises(RuntimeError, match="No cached model version"):
        client.list_deletable_models(v)
    bad = requests.delete(server.endpoint + "/v1/cache/models", params={"model_version": "../x"}, timeout=10)
    assert bad.status_code == 400


def test_resume_after_the_worker_is_killed_mid_download(hubs, log_dir, tmp_path, gemma_file):
    hub, _ = hubs
    size = os.path.getsize(gemma_file)
    home = tmp_path / "home"
    daemon = start_local(log_dir, _env(hubs, home))
    hub.throttle(20_000_000)
    try:
        assert launch(daemon.endpoint, "q5_0", "killed", wait=False).status_code == 200
        wait_until(lambda: (progress(daemon.endpoint, "killed")["replicas"][0].get("download") or {})
                   .get("downloaded_bytes", 0) > 10_000_000, 60, what="download under way")
        tree = [daemon.proc.pid] + [p.pid for p in daemon.tree()]
        daemon.stop(signal.SIGKILL)
        wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                   for p in tree), 15, what="every process gone")
    finally:
        hub.throttle(None)
    fetched = hub.bytes_served(REPO, gguf_name("q5_0"))
    assert 0 < fetched < size
    daemon = start_local(log_dir, _env(hubs, home))
    try:
        assert launch(daemon.endpoint, "q5_0", "resumed").status_code == 200
        assert gets(hub, "q5_0")[-1].startswith("bytes=")
        assert hub.bytes_served(REPO, gguf_name("q5_0")) <= size + IN_FLIGHT
    finally:
        daemon.stop()


def test_cli_launch_shows_megabytes_speed_and_eta(server, hubs):
    import subprocess
    import sys

    hub, _ = hubs
    xi = os.path.join(os.path.dirname(sys.executable), "xinference")
    hub.throttle(40_000_000)
    try:
        out = subprocess.run([xi, "launch", "-n", "qwen2.5-instruct", "-s", "0_5", "-f", "ggufv2", "-q", "q5_k_m",
                              "-u", "cli-dl", "-e", server.endpoint, "--n_ctx", "256"],
                             capture_output=True, text=True, timeout=180)
    finally:
        hub.throttle(None)
    assert out.returncode == 0, out.stderr
    assert re.search(r"downloading [\d.]+/253\.1 MB, [\d.]+ MB/s, ETA \d+:\d\d", out.stderr), out.stderr[-2000:]
    assert "Model uid: cli-dl" in out.stdout
    requests.delete(server.endpoint + "/v1/models/cli-dl", timeout=30)


def test_ollama_pull_streams_download_bytes_of_a_model_folder(hubs, log_dir, tmp_path, tiny_qwen2):
    """`/api/pull` of a catalogue name whose default spec is a pytorch folder: the lines
    carry the download's bytes (completed/total), then the load, then success."""
    ollama = pytest.importorskip("ollama")
    from pathlib import Path

    hub, _ = hubs
    folder = Path(tiny_qwen2)
    files = {str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()}
    total = sum(p.stat().st_size for p in files.values())
    hub.add_repo("Qwen/Qwen2.5-0.5B-Instruct", files)
    daemon = start_local(log_dir, _env(hubs, tmp_path / "home"))
    hub.throttle(max(100_000, total // 6))
    try:
        lines = list(ollama.Client(host=daemon.endpoint).pull("qwen2.5-instruct", stream=True))
    finally:
        hub.throttle(None)
    try:
        assert lines[0].status == "pulling manifest" and lines[-1].status == "success"
        pulling = [line for line in lines if line.status.startswith("pulling Qwen/")]
        assert pulling and all(line.total == total for line in pulling)
        assert any(0 < (line.completed or 0) < total for line in pulling)
        loading = [line for line in lines if line.status.startswith("loading")]
        assert loading and loading[-1].completed == loading[-1].total == 100
        assert lines.index(pulling[-1]) < lines.index(loading[-1])
        desc = requests.get(daemon.endpoint + "/v1/models/qwen2.5-instruct", timeout=10).json()
        assert desc["model_engine"] == "Transformers" and desc["model_format"] == "pytorch"
    finally:
        daemon.stop()


def test_ctrl_c_in_the_cli_cancels_the_download(server, hubs):
    import subprocess
    import sys

    hub, _ = hubs
    xi = os.path.join(os.path.dirname(sys.executable), "xinference")
    before = len(replica_processes(server))
    hub.throttle(10_000_000)
    proc = subprocess.Popen([xi, "launch", "-n", "qwen2.5-instruct", "-s", "0_5", "-f", "ggufv2", "-q", "q3_k_m",
                             "-u", "ctrl-c", "-e", server.endpoint], stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (progress(server.endpoint, "ctrl-c").get("replicas") or [{}])[0]
                   .get("download", {}).get("downloaded_bytes", 0) > 2_000_000, 60, what="downloading")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        hub.throttle(None)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Launch of ctrl-c cancelled" in err and "Traceback" not in err
    assert requests.get(server.endpoint + "/v1/models/ctrl-c", timeout=10).status_code == 404
    wait_until(lambda: len(replica_processes(server)) == before, 10, what="replica process ended")


def test_a_download_too_big_for_memory_stops_before_loading(server):
    """Before the download only the catalogue's size is known; once the file is here its
    header gives the KV cache, and a replica that cannot fit stops before it loads.
    (q3_k_m: only the Ctrl-C test before this one touched it, and left it partial.)"""
    def replicas():
        return [p for p in server.tree() if "xoscar" in " ".join(p.cmdline())]

    before = len(replicas())
    r = launch(server.endpoint, "q3_k_m", "too-big", n_ctx=32768, n_parallel=256)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "insufficient_memory"
    assert "KV cache 144.00 GiB for 8388608 tokens" in error["message"], error["message"]
    assert requests.get(server.endpoint + "/v1/models/too-big").status_code == 404
    wait_until(lambda: len(replicas()) == before, 10, what="its process gone")
    # the weights stay cached: a launch that fits starts without downloading again
    r = launch(server.endpoint, "q3_k_m", "fits")
    assert r.status_code == 200, r.text
    assert requests.delete(server.endpoint + "/v1/models/fits").status_code == 200
