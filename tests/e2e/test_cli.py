"""The CLI as a user types it, against a real server."""

import json
import os
import re
import subprocess
import sys

import requests

from tests.servers import free_port, start, wait_http, wait_until

XI = os.path.join(os.path.dirname(sys.executable), "xinference")


def run(*args, input=None, timeout=120, env=None):
    return subprocess.run([XI, *args], input=input, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_launch_list_terminate(api):
    out = run("launch", "-n", "gemma-3", "-en", "llama.cpp", "-f", "ggufv2", "-s", "0_27", "-q", "Q4_K_M",
              "-u", "cli-gemma", "-e", api, "--n_ctx", "512", "--n_threads", "1")
    assert out.returncode == 0, out.stderr
    assert "Model uid: cli-gemma" in out.stdout
    assert "100%" in out.stderr  # the progress bar reached the end
    desc = requests.get(f"{api}/v1/models/cli-gemma").json()
    assert desc["context_length"] == 512
    listed = run("list", env={"XINFERENCE_ENDPOINT": api})  # endpoint from the environment
    assert listed.returncode == 0
    header, rule, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["UID", "Type", "Name"]
    row = next(r for r in rows if r.startswith("cli-gemma"))
    assert "gemma-3" in row and "llama.cpp" in row and "READY" in row and "512" in row
    out = run("terminate", "--model-uid", "cli-gemma", "-e", api)
    assert out.returncode == 0
    assert "cli-gemma" not in run("list", "-e", api).stdout


def test_launch_errors_are_readable(api):
    out = run("launch", "-n", "gemma3", "-e", api)
    assert out.returncode == 1
    assert "Did you mean: gemma-3" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("launch", "-n", "gemma-3", "-e", api, "--n_ctx")
    assert out.returncode != 0 and "pairs" in out.stderr
    out = run("launch", "-n", "qwen1.5-chat", "-f", "ggufv2", "-s", "0_5", "-q", "q4_k_m", "-u", "q", "-e", api)
    assert out.returncode == 1
    # no hub is reachable in the tests: the reason names the repo, the file and the mirror setting
    assert "Model q is not running: its launch failed" in out.stderr
    assert "Qwen/Qwen1.5-0.5B-Chat-GGUF" in out.stderr and "qwen1_5-0_5b-chat-q4_k_m.gguf" in out.stderr
    assert "HF_ENDPOINT" in out.stderr
    assert "Traceback" not in out.stderr


def test_registrations_and_engine(api):
    out = run("registrations", "-t", "LLM", "-e", api)
    assert out.returncode == 0
    assert re.search(r"^gemma-3\s+en\s+generate, chat\s+32768", out.stdout, re.M)
    assert "qwen1.5-chat" in out.stdout and re.search(r"^qwen2\.5-instruct\s.*huggingface, modelscope\s+builtin",
                                                      out.stdout, re.M)
    for kind, name in (("embedding", "sentence-transformers/all-MiniLM-L6-v2"), ("rerank", "BAAI/bge-reranker-v2-m3")):
        listed = run("registrations", "-t", kind, "-e", api)
        assert listed.returncode == 0 and name in listed.stdout and "Traceback" not in listed.stderr
    out = run("engine", "-n", "gemma-3", "-e", api)
    assert out.returncode == 0 and re.search(r"llama\.cpp\s+ggufv2\s+0\.27", out.stdout)


def test_chat_and_generate_repl(api):
    out = run("chat", "--model-uid", "gemma", "-e", api, "--max-tokens", "4", "--temperature", "0",
              input="Hello there\nHow are you?\nexit\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Assistant:") == 2
    out = run("generate", "--model-uid", "gemma", "-e", api, "--max-tokens", "4", input="Once upon\n")
    assert out.returncode == 0, out.stderr
    assert "Prompt:" in out.stdout


def test_local_launch_banner_and_its_curl_line_works(tmp_path):
    port = free_port()
    d = start(["xinference-local", "-H", "127.0.0.1", "-p", str(port), "--launch", "gemma-3"],
              str(tmp_path), "banner")
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(d, endpoint + "/status")
        wait_until(lambda: "launched and ready" in d.log(), 120, what="ready banner")
        log = d.log()
        assert f"Xinference is running at {endpoint}" in log
        curl = re.search(r"^\s*(curl .*?\n.*?-d '.*?')$", log, re.M | re.S)
        assert curl, log
        out = subprocess.run(["bash", "-c", curl.group(1).replace("\\\n", " ")], capture_output=True,
                             text=True, timeout=60)
        assert '"chat.completion"' in out.stdout, out.stdout + out.stderr
    finally:
        d.stop()


def test_bare_xinference_starts_a_local_cluster(tmp_path):
    port = free_port()
    d = start(["xinference", "-H", "127.0.0.1", "-p", str(port)], str(tmp_path), "bare")
    try:
        wait_http(d, f"http://127.0.0.1:{port}/status")
        wait_until(lambda: f"http://127.0.0.1:{port}" in d.log(), 10, what="endpoint logged")
    finally:
        assert d.stop() == 0


def test_register_cached_remove_cache_and_unregister(api, tmp_path):
    from xinference.model.llm.family import get_family
    from xinference.model.llm.launch import plan_launch

    gemma = get_family("gemma-3")
    spec = {"version": 2, "context_length": 2048, "model_name": "cli-custom", "model_lang": ["en"],
            "model_ability": ["generate"], "model_specs": [{
                "model_format": "ggufv2", "model_size_in_billions": "0_27", "quantization": "q4_k_m",
                "model_uri": "file://" + plan_launch("gemma-3").resolve_weights()}],
            "stop": gemma.stop}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = run("register", "-t", "LLM", "-f", str(path), "-e", api)
    assert out.returncode == 0 and "Registered" in out.stdout, out.stderr
    again = run("register", "-t", "LLM", "-f", str(path), "-e", api)
    assert again.returncode == 1 and "registered already" in again.stderr and "Traceback" not in again.stderr
    listed = run("registrations", "-t", "LLM", "-e", api)
    assert re.search(r"^cli-custom\s+en\s+generate\s+2048", listed.stdout, re.M)
    assert run("unregister", "-t", "LLM", "-n", "cli-custom", "-e", api).returncode == 0
    assert "cli-custom" not in run("registrations", "-t", "LLM", "-e", api).stdout

    # the session's Gemma sits in the cache and is in use
    cached = run("cached", "-e", api)
    assert cached.returncode == 0
    header, _rule, *rows = cached.stdout.splitlines()
    assert header.split()[:3] == ["Model", "version", "Type"]
    row = next(r for r in rows if r.startswith("gemma-3--0_27B-ggufv2-q4_k_m"))
    assert "LLM" in row and "q4_k_m" in row and "pypi" in row
    out = run("remove-cache", "-v", "gemma-3--0_27B-ggufv2-q4_k_m", "-y", "-e", api)
    assert out.returncode == 1 and "used by running replica" in out.stderr
    assert "gemma-3-270m-q4_k_m.gguf" in out.stdout  # it showed what it would delete
    out = run("remove-cache", "-v", "nothing-here", "-y", "-e", api)
    assert out.returncode == 1 and "No cached model version" in out.stderr
