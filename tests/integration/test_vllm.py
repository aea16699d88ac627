"""The vLLM engine behind a real xinference-local, on CPU: the embedded Gemma 3 270M
converted to a Hugging Face folder at test time, with a LoRA adapter, served by vLLM in
its own virtualenv (scripts/install_vllm.sh). One launch (vLLM takes about a minute to
start here) serves every test of the module."""

import json
import time
from pathlib import Path

import pytest
import requests

from tests.servers import start_local, wait_until
from xinference.model.llm.engines.vllm.engine import VllmEngine

pytestmark = pytest.mark.skipif(not VllmEngine.is_installed(),
                                reason="vLLM is not installed (bash scripts/install_vllm.sh)")
openai = pytest.importorskip("openai")

UID = "gemma-vllm"
# the conversion takes about a minute: done once per machine
CACHE = Path.home() / ".cache" / "xinference-tests" / "gemma-3-270m-hf"
# bounded values only: a base model may otherwise write digits until max_tokens
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"},
                                           "color": {"enum": ["red", "green", "blue"]}},
          "required": ["ok", "color"], "additionalProperties": False}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tests.hf_gemma import build_gemma_folder
    from tests.tiny_models import build_lora
    from xinference.model.llm.launch import plan_launch

    gguf = plan_launch("gemma-3").resolve_weights()
    base = build_gemma_folder(gguf, CACHE)
    return base, build_lora(base, tmp_path_factory.mktemp("gemma-lora"), seed=3)


@pytest.fixture(scope="module")
def server(log_dir, folders):
    base, lora = folders
    daemon = start_local(log_dir)
    try:
        r = requests.post(daemon.endpoint + "/v1/models", json={
            "model_name": "gemma-3", "model_uid": UID, "model_format": "pytorch",
            "model_size_in_billions": "0_27", "model_engine": "vLLM", "model_path": base,
            "max_model_len": 1024, "max_num_seqs": 4, "max_queue": 2, "kv_cache_space_gib": 1,
            "peft_model_config": {"lora_list": [{"lora_name": "gemma-lora", "local_path": lora}]},
        }, timeout=600)
        assert r.status_code == 200, r.text
        yield daemon
    finally:
        daemon.stop()


def _client(server):
    return openai.OpenAI(base_url=server.endpoint + "/v1", api_key="x", max_retries=0)


def _complete(server, model=UID, **extra):
    body = {"model": model, "prompt": "The capital of France is", "max_tokens": 8,
            "temperature": 0, **extra}
    r = requests.post(server.endpoint + "/v1/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.timeout(900)  # the first test waits for the conversion and vLLM to start
def test_described_with_its_slots_and_engine(server):
    d = requests.get(f"{server.endpoint}/v1/models/{UID}", timeout=10).json()
    assert (d["model_engine"], d["device"], d["slots_total"], d["slots_busy"]) == ("vLLM", "cpu", 4, 0)
    assert d["dtype"] in ("float32", "bfloat16")
    assert d["context_length"] == 1024


@pytest.mark.timeout(300)
def test_greedy_completions_stream_and_chat(server):
    out = _complete(server)
    text = out["choices"][0]["text"]
    assert text.strip() and out["usage"]["completion_tokens"] <= 8
    client = _client(server)
    stream = client.completions.create(model=UID, prompt="The capital of France is", max_tokens=8,
                                       temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices) == text
    chat = client.chat.completions.create(model=UID, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=6, temperature=0)
    assert chat.usage.completion_tokens >= 1 and chat.usage.prompt_tokens > 3


@pytest.mark.timeout(300)
def test_seeded_sampling_repeats_and_stop_strings_cut(server):
    a = _complete(server, temperature=1.0, seed=11, max_tokens=12)["choices"][0]["text"]
    b = _complete(server, temperature=1.0, seed=11, max_tokens=12)["choices"][0]["text"]
    assert a == b
    full = _complete(server, max_tokens=12, ignore_eos=True)["choices"][0]["text"]
    stop = full.strip().split()[0]
    cut = _complete(server, max_tokens=12, ignore_eos=True, stop=[stop])["choices"][0]
    assert cut["finish_reason"] == "stop" and cut["text"] == full[: full.index(stop)]


@pytest.mark.timeout(300)
def test_json_schema_is_guaranteed_by_structured_outputs(server):
    chat = _client(server).chat.completions.create(
        model=UID, messages=[{"role": "user", "content": "Pick a color, as JSON."}], max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}})
    assert chat.choices[0].finish_reason == "stop", chat.choices[0].message.content
    answer = json.loads(chat.choices[0].message.content)
    assert set(answer) == {"ok", "color"} and isinstance(answer["ok"], bool)
    assert answer["color"] in ("red", "green", "blue")


@pytest.mark.timeout(300)
def test_the_lora_adapter_is_a_model_id(server):
    names = [m.id for m in _client(server).models.list().data]
    assert "gemma-lora" in names
    base = _complete(server, max_tokens=8, ignore_eos=True)["choices"][0]["text"]
    tuned = _complete(server, model="gemma-lora", max_tokens=8, ignore_eos=True)["choices"][0]["text"]
    assert tuned != base
    assert tuned == _complete(server, lora_name="gemma-lora", max_tokens=8,
                              ignore_eos=True)["choices"][0]["text"]


@pytest.mark.timeout(300)
def test_a_client_that_leaves_frees_its_slot(server):
    busy = []
    with requests.post(server.endpoint + "/v1/completions", stream=True, timeout=120, json={
            "model": UID, "prompt": "Count:", "max_tokens": 900, "ignore_eos": True,
            "stream": True}) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                busy.append(requests.get(f"{server.endpoint}/v1/models/{UID}", timeout=10)
                            .json()["slots_busy"])
                if len(busy) == 3:
                    break  # closing the iterator closes the connection: the client left
    assert busy == [1, 1, 1]
    wait_until(lambda: requests.get(f"{server.endpoint}/v1/models/{UID}", timeout=10)
               .json()["slots_busy"] == 0, 20, what="the slot freed")


def test_what_vllm_cannot_take_is_a_400(server, folders):
    r = requests.post(server.endpoint + "/v1/completions", timeout=30, json={
        "model": UID, "prompt": "x " * 1100, "max_tokens": 4})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    t0 = time.monotonic()
    r = requests.post(server.endpoint + "/v1/models", timeout=60, json={
        "model_name": "gemma-3", "model_uid": "bad-vllm", "model_format": "pytorch",
        "model_engine": "vLLM", "model_path": folders[0],
        "gpu_memory_utilization": 0.5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "gpu_memory_utilization"
    assert time.monotonic() - t0 < 30  # refused before vLLM starts
