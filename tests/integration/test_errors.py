"""Every error case answers in the OpenAI shape with the right status, and a failed
launch leaves no process or reservation behind."""

import time

import psutil
import requests

from tests.conftest import GEMMA_UID
from tests.servers import wait_until


def _err(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["detail"] == body["error"]["message"]
    return body


def test_unknown_uid_404(api):
    _err(requests.post(api + "/v1/chat/completions",
                       json={"model": "missing", "messages": [{"role": "user", "content": "x"}]}), 404)
    _err(requests.get(api + "/v1/models/missing"), 404)
    _err(requests.delete(api + "/v1/models/missing"), 404)


def test_duplicate_uid_409(api):
    body = _err(requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_uid": GEMMA_UID}), 409)
    assert GEMMA_UID in body["error"]["message"]


def test_unknown_family_400_suggests(api):
    body = _err(requests.post(api + "/v1/models", json={"model_name": "gemma3"}), 400)
    assert "gemma-3" in body["error"]["message"]
    assert body["error"]["param"] == "model_name"


def test_engine_cannot_run_spec_400(api):
    body = _err(requests.post(api + "/v1/models", json={
        "model_name": "gemma-3", "model_engine": "llama.cpp", "model_format": "pytorch"}), 400)
    assert "llama.cpp" in body["error"]["message"] and "pytorch" in body["error"]["message"]
    _err(requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_engine": "nope"}), 400)
    _err(requests.post(api + "/v1/models", json={"model_name": "gemma-3", "no_such_kwarg": 1}), 400)


def test_malformed_bodies(api):
    _err(requests.post(api + "/v1/chat/completions", data="{not json",
                       headers={"Content-Type": "application/json"}), 400)
    _err(requests.post(api + "/v1/chat/completions", json={"model": GEMMA_UID}), 400)
    _err(requests.post(api + "/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": [{"role": "wizard", "content": "x"}]}), 400)
    body = _err(requests.post(api + "/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": [{"role": "user", "content": "x"}], "temperature": 7}), 400)
    assert body["error"]["param"] == "temperature"
    _err(requests.post(api + "/v1/models", json={"model_uid": "x"}), 400)
    # Gemma's template requires alternating roles
    _err(requests.post(api + "/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}), 400)


def test_prompt_beyond_context_400_names_both_numbers(api):
    body = _err(requests.post(api + "/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000}), 400)
    msg = body["error"]["message"]
    assert "2048" in msg and "4000" in msg
    long_prompt = "word " * 3000
    body = _err(requests.post(api + "/v1/completions", json={
        "model": GEMMA_UID, "prompt": long_prompt, "max_tokens": 10, "stream": True}), 400)
    assert body["error"]["code"] == "context_length_exceeded"


def _replica_processes(local):
    return [p for p in local.tree() if "xoscar" in " ".join(p.cmdline())]


def test_unreachable_hub_503_at_once_and_nothing_left(api, local):
    # conftest points HF_ENDPOINT at a closed port on loopback
    before = len(_replica_processes(local))
    started = time.monotonic()
    body = _err(requests.post(api + "/v1/models", json={
        "model_name": "qwen1.5-chat", "model_format": "ggufv2", "model_size_in_billions": "0_5",
        "quantization": "q4_k_m", "model_uid": "qwen-missing"}), 503)
    assert time.monotonic() - started < 15
    message = body["error"]["message"]
    for part in ("Qwen/Qwen1.5-0.5B-Chat-GGUF", "qwen1_5-0_5b-chat-q4_k_m.gguf", "Hugging Face",
                 "HF_ENDPOINT", "127.0.0.1:9"):
        assert part in message, part
    assert body["error"]["code"] == "hub_unreachable"
    _err(requests.get(api + "/v1/models/qwen-missing"), 404)
    wait_until(lambda: len(_replica_processes(local)) == before, 10, what="sub-process removed")


def test_broken_weights_fail_cleanly(api, local, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1024)
    before = len(_replica_processes(local))
    r = requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_uid": "broken",
                                                "model_path": str(bad)})
    assert r.status_code in (400, 500), r.text
    assert r.json()["detail"]
    _err(requests.get(api + "/v1/models/broken"), 404)
    assert "broken" not in requests.get(api + "/v1/models").json()["data"]
    wait_until(lambda: len(_replica_processes(local)) == before, 10, what="sub-process removed")
    # and the uid is free again
    _err(requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_uid": "broken",
                                                 "model_path": str(tmp_path / "nope.gguf")}), 400)


def test_loading_model_503_with_retry_after(api):
    r = requests.post(api + "/v1/models", params={"wait_ready": "false"},
                      json={"model_name": "gemma-3", "model_uid": "slow", "n_ctx": 256})
    assert r.status_code == 200 and r.json() == {"model_uid": "slow"}
    try:
        chat = requests.post(api + "/v1/chat/completions", json={
            "model": "slow", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        # starting a process and loading take ~1 s; this request comes within milliseconds
        _err(chat, 503)
        assert int(chat.headers["Retry-After"]) >= 1
        assert chat.json()["error"]["type"] == "service_unavailable"
        assert requests.get(api + "/v1/models/slow").json()["status"] == "CREATING"
        wait_until(lambda: requests.get(api + "/v1/models/slow").json()["status"] == "READY", 60)
        ok = requests.post(api + "/v1/chat/completions", json={
            "model": "slow", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
        assert ok.status_code == 200
    finally:
        requests.delete(api + "/v1/models/slow")


def test_terminate_frees_the_process(api, local):
    before = {p.pid for p in _replica_processes(local)}
    r = requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_uid": "tmp", "n_ctx": 256,
                                                "envs": {"OMP_NUM_THREADS": "3"}})
    assert r.status_code == 200, r.text
    new = {p.pid for p in _replica_processes(local)} - before
    assert len(new) == 1
    env = psutil.Process(next(iter(new))).environ()
    assert env["OMP_NUM_THREADS"] == "3"  # `envs` reach the replica's process
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # no GPU reserved: it sees none
    assert requests.delete(api + "/v1/models/tmp").status_code == 200
    assert "tmp" not in [m["id"] for m in requests.get(api + "/v1/models").json()["data"]]
    pid = new.pop()
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               10, what="replica process gone")
    _err(requests.post(api + "/v1/chat/completions", json={
        "model": "tmp", "messages": [{"role": "user", "content": "x"}]}), 404)


def test_client_disconnect_aborts_generation(api):
    """A stream whose client goes away stops decoding: the next request is not kept waiting."""
    r = requests.post(api + "/v1/completions", stream=True, json={
        "model": GEMMA_UID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 1500, "stream": True,
        "temperature": 0})
    lines = r.iter_lines()
    got = 0
    for line in lines:
        if line.startswith(b"data: "):
            got += 1
            if got == 3:
                break
    r.close()
    # 1500 tokens would take well over 10 s on any of our machines: the slot frees at once
    _wait_slots_free(api)
    ok = requests.post(api + "/v1/completions", json={"model": GEMMA_UID, "prompt": "Hi", "max_tokens": 4})
    assert ok.status_code == 200


def _wait_slots_free(api, timeout=3.0):
    def idle():
        d = requests.get(f"{api}/v1/models/{GEMMA_UID}").json()
        return d["slots_busy"] == 0 and d["slots_free"] == d["slots_total"]

    wait_until(idle, timeout, interval=0.05, what="all slots free")


def test_client_timeout_on_non_stream_aborts_generation(api):
    """A non-streaming client that gives up (timeout) also stops the decoding."""
    try:
        requests.post(api + "/v1/completions", timeout=1.5, json={
            "model": GEMMA_UID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 1500, "temperature": 0})
        raise AssertionError("1500 tokens cannot finish within 1.5 s")
    except requests.Timeout:
        pass
    _wait_slots_free(api)
    ok = requests.post(api + "/v1/completions", json={"model": GEMMA_UID, "prompt": "Hi", "max_tokens": 4})
    assert ok.status_code == 200


def test_request_limits_429(api):
    r = requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_uid": "limited",
                                                "request_limits": 1, "n_ctx": 512})
    assert r.status_code == 200, r.text
    try:
        # greedy on this prompt runs the full 300 tokens (seconds), never an early EOS
        body = {"model": "limited", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 300, "stream": True,
                "temperature": 0}
        with requests.post(api + "/v1/completions", json=body, stream=True) as first:
            # keep the iterator referenced: dropping it may close the connection
            lines = first.iter_lines()
            assert next(lines).startswith(b"data: ")
            second = requests.post(api + "/v1/completions", json={**body, "stream": False, "max_tokens": 2})
            err = _err(second, 429)
            assert err["error"]["type"] == "rate_limit_error"
            assert second.headers["Retry-After"]
            assert any(b'"finish_reason": "length"' in line for line in lines)  # the first ran on
    finally:
        requests.delete(api + "/v1/models/limited")


def test_crashed_replica_is_relaunched_and_its_model_serves_again(api, local):
    """kill -9 of a replica process (as an engine segfault would): the open stream ends
    with an error event, the worker notices, the supervisor relaunches the replica;
    meanwhile the model (its only replica gone) answers 503 with Retry-After, never a
    hang or a 500; the crash and relaunch are its events."""
    before = {p.pid for p in _replica_processes(local)}
    r = requests.post(api + "/v1/models", json={"model_name": "gemma-3", "model_uid": "crashy", "n_ctx": 256})
    assert r.status_code == 200, r.text
    (pid,) = {p.pid for p in _replica_processes(local)} - before
    stream = requests.post(api + "/v1/completions", stream=True, json={
        "model": "crashy", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 200, "stream": True, "temperature": 0})
    lines = stream.iter_lines()
    assert next(lines).startswith(b"data: ")
    psutil.Process(pid).kill()
    rest = [line for line in lines if line.startswith(b"data: ")]
    assert rest and b'"error"' in rest[-1], "the open stream ends with an error event"
    body = {"model": "crashy", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2}
    codes = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = requests.post(api + "/v1/chat/completions", json=body, timeout=30)
        codes.add(r.status_code)
        if r.status_code == 503:
            assert r.headers.get("Retry-After") and r.json()["error"]["type"] == "service_unavailable"
        if r.status_code == 200 and 503 in codes:
            break
        time.sleep(0.1)
    assert codes <= {200, 503} and 503 in codes and r.status_code == 200, codes
    desc = requests.get(api + "/v1/models/crashy").json()
    assert desc["status"] == "READY" and desc["restarts"] == 1 and "ended unexpectedly" in desc["last_error"]
    events = requests.get(api + "/v1/models/crashy/events").json()["data"]
    assert [e["kind"] for e in events] == ["crashed", "relaunching", "relaunched"], events
    (fresh,) = {p.pid for p in _replica_processes(local)} - before
    assert fresh != pid
    assert requests.delete(api + "/v1/models/crashy").status_code == 200
    # the gemma replica never noticed
    ok = requests.post(api + "/v1/chat/completions", json={
        "model": GEMMA_UID, "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})
    assert ok.status_code == 200


def test_a_launch_too_big_for_memory_is_refused_before_any_process_starts(api, local):
    before = len(_replica_processes(local))
    # more KV cache than the machine has: never fits, a 400
    body = _err(requests.post(api + "/v1/models", json={
        "model_name": "gemma-3", "model_uid": "huge", "n_ctx": 32768, "n_parallel": 256}), 400)
    message = body["error"]["message"]
    assert "KV cache 144.00 GiB for 8388608 tokens" in message and "GiB free of" in message, message
    assert body["error"]["code"] == "insufficient_memory"
    assert len(_replica_processes(local)) == before
    _err(requests.get(api + "/v1/models/huge"), 404)
    # more than is free now but less than the machine has: a 503 to retry later
    status = requests.get(api + "/v1/workers").json()[0]["status"]
    between = (status["memory_available"] + status["memory_total"]) // 2
    n_parallel = between // (32768 * 18432) + 1
    r = requests.post(api + "/v1/models", json={
        "model_name": "gemma-3", "model_uid": "huge", "n_ctx": 32768, "n_parallel": n_parallel})
    body = _err(r, 503)
    assert body["error"]["code"] == "insufficient_memory" and r.headers["Retry-After"]
    assert len(_replica_processes(local)) == before
