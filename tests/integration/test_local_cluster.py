"""A real local cluster, real HTTP, the real embedded Gemma model."""

import json

import pytest
import requests

from tests.conftest import GEMMA_UID

CHAT = {"model": GEMMA_UID, "messages": [{"role": "user", "content": "Name a color."}],
        "max_tokens": 8, "temperature": 0}


def test_status_and_cluster(api):
    assert requests.get(api + "/status").json()["status"] == "ok"
    address = requests.get(api + "/v1/address").json()
    assert isinstance(address, str) and address.startswith("127.0.0.1:")
    workers = requests.get(api + "/v1/workers").json()
    assert len(workers) == 1
    assert workers[0]["status"]["cpu_count"] >= 1
    assert workers[0]["status"]["memory_total"] > workers[0]["status"]["memory_available"] > 0
    nodes = requests.get(api + "/v1/cluster/info").json()
    assert [n["node_type"] for n in nodes] == ["Supervisor", "Worker"]
    assert requests.get(api + "/v1/cluster/auth").json() == {"auth": False}
    assert requests.get(api + "/docs").status_code == 200
    assert "/v1/chat/completions" in requests.get(api + "/openapi.json").json()["paths"]


def test_list_and_describe(api):
    models = requests.get(api + "/v1/models").json()
    assert models["object"] == "list"
    ids = [m["id"] for m in models["data"]]
    assert GEMMA_UID in ids
    d = requests.get(f"{api}/v1/models/{GEMMA_UID}").json()
    assert d["model_type"] == "LLM"
    assert d["model_name"] == "gemma-3"
    assert d["model_ability"] == ["generate", "chat"]
    assert d["model_format"] == "ggufv2"
    assert d["model_size_in_billions"] == "0_27"
    assert d["quantization"].lower() == "q4_k_m"
    assert d["model_engine"] == "llama.cpp"
    assert d["replica"] == 1
    assert d["context_length"] == 2048  # the n_ctx it was launched with
    assert d["status"] == "READY"
    inst = requests.get(api + "/v1/models/instances", params={"model_uid": GEMMA_UID}).json()
    assert inst[0]["status"] == "READY" and inst[0]["model_name"] == "gemma-3"
    done = requests.get(f"{api}/v1/models/{GEMMA_UID}/progress").json()
    assert done["progress"] == 1.0 and done["stage"] == "ready"
    assert [r["stage"] for r in done["replicas"]] == ["ready"]


def test_registrations_and_engines(api):
    regs = requests.get(api + "/v1/model_registrations/LLM").json()
    names = {r["model_name"] for r in regs}
    assert {"gemma-3", "qwen1.5-chat", "llama-2-chat", "chatglm3"} <= names
    fam = requests.get(api + "/v1/model_registrations/LLM/gemma-3").json()
    assert fam["chat_template"] and fam["context_length"] == 32768
    engines = requests.get(api + "/v1/engines/gemma-3").json()
    assert "llama.cpp" in engines
    assert any(r["model_format"] == "ggufv2" for r in engines["llama.cpp"])


def test_chat_non_stream(api):
    r = requests.post(api + "/v1/chat/completions", json=CHAT)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # temperature 0 is deterministic
    again = requests.post(api + "/v1/chat/completions", json=CHAT).json()
    assert again["choices"][0]["message"]["content"] == choice["message"]["content"]


def _events(resp):
    out = []
    for line in resp.iter_lines():
        if line.startswith(b"data: "):
            data = line[6:]
            out.append(data.decode() if data == b"[DONE]" else json.loads(data))
    return out


def test_chat_stream_matches_non_stream(api):
    # Prime the prefix cache, so both calls below evaluate the same way (reusing the
    # prompt); a cold and a warm run of a quantized model may differ in the last digits.
    assert requests.post(api + "/v1/chat/completions", json=CHAT).status_code == 200
    whole = requests.post(api + "/v1/chat/completions", json=CHAT).json()
    r = requests.post(api + "/v1/chat/completions",
                      json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}, stream=True)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finals) == 1
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_completion_stop_and_length(api):
    body = {"model": GEMMA_UID, "prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}
    full = requests.post(api + "/v1/completions", json=body).json()
    assert full["object"] == "text_completion"
    text = full["choices"][0]["text"]
    assert full["choices"][0]["finish_reason"] == "length"
    assert full["usage"]["completion_tokens"] == 12
    # cut at the first word that follows
    word = text.split()[1]
    cut = requests.post(api + "/v1/completions", json={**body, "stop": [word]}).json()
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert word not in cut["choices"][0]["text"]
    assert text.startswith(cut["choices"][0]["text"])
    stream = requests.post(api + "/v1/completions", json={**body, "stream": True}, stream=True)
    events = _events(stream)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == text
    for stream in (False, True):
        r = requests.post(api + "/v1/completions", json={**body, "echo": True, "stream": stream}, stream=stream)
        got = (r.json()["choices"][0]["text"] if not stream
               else "".join(e["choices"][0]["text"] for e in _events(r)[:-1]))
        assert got == body["prompt"] + text


def test_tools_are_refused_not_ignored(api):
    r = requests.post(api + "/v1/chat/completions", json={**CHAT, "tools": [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]})
    assert r.status_code == 400 and "tool" in r.json()["detail"]


def test_seed_reproducible_sampling(api):
    body = {**CHAT, "temperature": 1.0, "top_p": 0.9, "top_k": 20, "seed": 1234, "max_tokens": 12}
    a = requests.post(api + "/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    b = requests.post(api + "/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
    assert a == b


def test_openai_sdk(api):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=api + "/v1", api_key="none")
    out = client.chat.completions.create(model=GEMMA_UID, messages=CHAT["messages"], max_tokens=6, temperature=0)
    assert out.choices[0].message.content
    assert out.usage.completion_tokens <= 6
    parts = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=GEMMA_UID, messages=CHAT["messages"], max_tokens=6, temperature=0, stream=True) if c.choices]
    assert "".join(parts) == out.choices[0].message.content
    comp = client.completions.create(model=GEMMA_UID, prompt="Hello", max_tokens=4, temperature=0)
    assert comp.choices[0].text
    assert GEMMA_UID in [m.id for m in client.models.list().data]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=CHAT["messages"])


def test_our_client(api):
    from xinference.client import Client

    client = Client(api)
    assert GEMMA_UID in client.list_models()
    assert client.describe_model(GEMMA_UID)["model_engine"] == "llama.cpp"
    model = client.get_model(GEMMA_UID)
    out = model.chat(CHAT["messages"], generate_config={"max_tokens": 5, "temperature": 0})
    assert out["choices"][0]["message"]["content"]
    chunks = list(model.chat(CHAT["messages"], generate_config={"max_tokens": 5, "temperature": 0, "stream": True}))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == out["choices"][0]["message"]["content"]
    gen = model.generate("Once upon a time", generate_config={"max_tokens": 5})
    assert gen["usage"]["completion_tokens"] == 5
    assert client.query_engine_by_model_name("gemma-3")["llama.cpp"]
    assert client.get_model_registration("LLM", "gemma-3")["model_name"] == "gemma-3"
    with pytest.raises(RuntimeError, match="uid: nope"):
        client.describe_model("nope")


def test_idle_keep_alive_connection_outlives_the_clients_expiry(api):
    # httpx (under the openai and ollama SDKs) reuses an idle connection for 5 s: the
    # server must not close it at that same moment.
    import http.client
    import time
    from urllib.parse import urlsplit

    url = urlsplit(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/status")
    assert conn.getresponse().read() and conn.sock is not None
    sock = conn.sock
    time.sleep(6)
    conn.request("GET", "/status")
    resp = conn.getresponse()
    assert resp.status == 200 and b"ok" in resp.read()
    assert conn.sock is sock  # the same connection, not a new one
    conn.close()


def test_our_client_takes_the_older_prompt_forms(api):
    """model.chat(prompt, chat_history, generate_config) (Xinference's own examples) and
    chat(prompt=, chat_history=, system_prompt=, generate_config=) (what LlamaIndex's
    Xinference LLM calls) send the same chat as the messages they stand for: the same
    prompt, token for token (the answers of this base model may differ by a near-tie
    when one of them reuses the prefix cache)."""
    from xinference.client import Client

    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    config = {"max_tokens": 2, "temperature": 0}
    question = {"role": "user", "content": "What is my name?"}
    with Client(api) as client:
        model = client.get_model(GEMMA_UID)

        def prompt_tokens(out):
            assert out["choices"][0]["message"]["content"] is not None
            return out["usage"]["prompt_tokens"]

        want = prompt_tokens(model.chat([*history, question], generate_config=config))
        assert prompt_tokens(model.chat("What is my name?", history, config)) == want
        assert prompt_tokens(model.chat("What is my name?", history, generate_config=config)) == want
        assert prompt_tokens(model.chat(prompt="What is my name?", chat_history=history,
                                        generate_config=config)) == want
        alone = prompt_tokens(model.chat("What is my name?", generate_config=config))
        assert alone == prompt_tokens(model.chat([question], generate_config=config)) and alone < want
        system = {"role": "system", "content": "Answer in French, please, and briefly."}
        want_sys = prompt_tokens(model.chat([system, *history, question], generate_config=config))
        assert want_sys > want
        assert prompt_tokens(model.chat(prompt="What is my name?", chat_history=history, system_prompt=system["content"],
                                        generate_config=config)) == want_sys
        for bad in ({"messages": history, "prompt": "x"}, {"chat_history": history}, {}):
            with pytest.raises(ValueError):
                model.chat(**bad)
