"""The Transformers engine behind the real server: launch a tiny Hugging Face model
with two LoRA adapters, chat and stream, pick adapters by `model` or `lora_name`,
abort on disconnect, terminate."""

import json
import socket

import pytest
import requests

from tests.servers import wait_until

UID = "tiny-llama"


def _post(api, path, body, timeout=120):
    return requests.post(f"{api}{path}", json=body, timeout=timeout)


@pytest.fixture(scope="module")
def tiny(local, tiny_llama, tiny_lora_a, tiny_lora_b):
    api = local.endpoint
    r = _post(api, "/v1/models", {
        "model_name": "llama-2-chat", "model_uid": UID, "model_format": "pytorch",
        "model_engine": "Transformers", "model_path": tiny_llama, "dtype": "float32",
        "max_num_seqs": 4,
        "peft_model_config": {"lora_list": [{"lora_name": "sql-a", "local_path": tiny_lora_a},
                                            {"lora_name": "sql-b", "local_path": tiny_lora_b}]},
    }, timeout=300)
    assert r.status_code == 200, r.text
    yield UID
    assert requests.delete(f"{api}/v1/models/{UID}").status_code == 200
    ids = [m["id"] for m in requests.get(f"{api}/v1/models").json()["data"]]
    assert UID not in ids and "sql-a" not in ids


def _complete(api, model, **extra):
    body = {"model": model, "prompt": "Hello world", "max_tokens": 12, "temperature": 0,
            "ignore_eos": True, **extra}
    r = _post(api, "/v1/completions", body)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_adapters_are_listed_and_described(api, tiny):
    data = {m["id"]: m for m in requests.get(f"{api}/v1/models").json()["data"]}
    assert data["sql-a"]["parent"] == UID and data["sql-b"]["lora_name"] == "sql-b"
    d = requests.get(f"{api}/v1/models/{UID}").json()
    assert d["model_engine"] == "Transformers" and d["status"] == "READY"
    assert d["slots_total"] == 4 and d["slots_busy"] == 0
    assert (d["device"], d["dtype"]) == ("cpu", "float32")
    assert [a["lora_name"] for a in d["lora_adapters"]] == ["sql-a", "sql-b"]
    replica = requests.get(f"{api}/v1/models/{UID}/replicas").json()[0]
    assert replica["slots_total"] == 4


def test_an_adapter_is_picked_by_model_or_by_lora_name(api, tiny):
    base = _complete(api, UID)
    a = _complete(api, "sql-a")
    assert a == _complete(api, UID, lora_name="sql-a")
    assert len({base, a, _complete(api, "sql-b")}) == 3
    r = _post(api, "/v1/completions", {"model": UID, "prompt": "x", "lora_name": "nope"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "lora_name"


def test_chat_through_the_tokenizers_template_streams_and_counts(api, tiny):
    body = {"model": UID, "messages": [{"role": "user", "content": "你好"}], "max_tokens": 10,
            "temperature": 0, "ignore_eos": True}
    whole = _post(api, "/v1/chat/completions", body).json()
    # "<s>[INST] 你好 [/INST]" in the tiny tokenizer
    assert whole["usage"]["completion_tokens"] == 10 and whole["usage"]["prompt_tokens"] > 4
    with requests.post(f"{api}/v1/chat/completions", stream=True, timeout=120,
                       json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith(b"data: {")]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert events[-1]["usage"]["completion_tokens"] == 10


PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 3}},
    "required": ["name", "age", "tags"], "additionalProperties": False}


def test_json_schema_output_always_validates_streamed_or_not(api, tiny):
    """The random tiny model writes schema-valid JSON only because the grammar masks its
    logits: across seeds, streamed and whole, with unconstrained rows in the same batch."""
    import concurrent.futures

    import jsonschema

    ask = [{"role": "user", "content": "Who?"}]
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}

    def constrained(seed, stream):
        body = {"model": UID, "messages": ask, "max_tokens": 200, "temperature": 1.0, "seed": seed,
                "response_format": fmt, "stream": stream}
        if not stream:
            r = _post(api, "/v1/chat/completions", body)
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"], r.json()["choices"][0]["finish_reason"]
        with requests.post(f"{api}/v1/chat/completions", json=body, stream=True, timeout=120) as r:
            events = [json.loads(x[6:]) for x in r.iter_lines() if x.startswith(b"data: {")]
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
        return text, events[-1]["choices"][0]["finish_reason"]

    free = {"model": UID, "prompt": "Hello", "max_tokens": 30, "temperature": 1.0, "ignore_eos": True}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(constrained, seed, seed % 2 == 1) for seed in range(4)]
        plain = pool.submit(_post, api, "/v1/completions", free)
        for job in jobs:
            text, reason = job.result()
            assert reason == "stop", text
            jsonschema.validate(json.loads(text), PERSON)
        assert plain.result().json()["usage"]["completion_tokens"] == 30
    # Ollama's format as a schema (with "json" alone a random model may write a string
    # until num_predict runs out: valid so far, never closed)
    r = _post(api, "/api/chat", {"model": UID, "messages": ask, "format": PERSON, "stream": False,
                                 "options": {"num_predict": 200}})
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["message"]["content"]), PERSON)


def test_a_client_that_disconnects_frees_its_slot(api, tiny):
    body = json.dumps({"model": UID, "prompt": "1, 2, 3", "max_tokens": 3000, "temperature": 0,
                       "ignore_eos": True, "stream": True}).encode()
    host, port = api.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"200 OK" in s.recv(4096)
        wait_until(lambda: requests.get(f"{api}/v1/models/{UID}").json()["slots_busy"] == 1, 10,
                   what="the stream holds a slot")
    wait_until(lambda: requests.get(f"{api}/v1/models/{UID}").json()["slots_busy"] == 0, 10,
               what="the slot is freed after the client left")


def test_adapter_names_cannot_clash_and_adapters_are_not_terminated_alone(api, tiny, tiny_llama, tiny_lora_a):
    r = _post(api, "/v1/models", {
        "model_name": "llama-2-chat", "model_uid": "sql-a", "model_format": "pytorch",
        "model_engine": "Transformers", "model_path": tiny_llama})
    assert r.status_code == 409
    r = requests.delete(f"{api}/v1/models/sql-a")
    assert r.status_code == 400 and UID in r.json()["detail"]


def test_a_gguf_file_loads_dequantized_and_answers_like_the_folder(api, tiny, tiny_llama_gguf):
    r = _post(api, "/v1/models", {
        "model_name": "llama-2-chat", "model_uid": "tiny-gguf", "model_format": "ggufv2",
        "model_engine": "Transformers", "model_path": tiny_llama_gguf, "dtype": "float32"})
    assert r.status_code == 200, r.text
    try:
        assert requests.get(f"{api}/v1/models/tiny-gguf").json()["model_format"] == "ggufv2"
        assert _complete(api, "tiny-gguf") == _complete(api, UID)
    finally:
        requests.delete(f"{api}/v1/models/tiny-gguf")
