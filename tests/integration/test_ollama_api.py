"""The Ollama-compatible API (/api/*) on a real local cluster: the real `ollama` Python
client and raw HTTP, the embedded Gemma (uid `gemma`, n_ctx 2048) and MiniLM."""

import json
from datetime import datetime

import pytest
import requests

from tests.conftest import GEMMA_UID
from tests.servers import wait_until

ollama = pytest.importorskip("ollama")

pytestmark = pytest.mark.timeout(180)

ASK = [{"role": "user", "content": "Name a color."}]
GREEDY = {"temperature": 0, "repeat_penalty": 1.0, "num_predict": 8}
TIMINGS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
           "eval_count", "eval_duration")
# The embedded Gemma is a base model: shown two examples it answers with a third, and
# then, free to go on, rambles; a JSON format ends it where the object closes.
FEW_SHOT = [{"role": "user", "content": "A cat as JSON."},
            {"role": "assistant", "content": '{"animal": "cat", "legs": 4}'},
            {"role": "user", "content": "A bird as JSON."},
            {"role": "assistant", "content": '{"animal": "bird", "legs": 2}'},
            {"role": "user", "content": "A dog as JSON."}]
SCHEMA = {"type": "object",
          "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]},
                         "bright": {"type": "boolean"}},
          "required": ["color", "bright"]}


@pytest.fixture
def client(local):
    # One per test: a connection pooled across tests can sit idle past the server's
    # keep-alive and be reset as it is reused.
    with ollama.Client(host=local.endpoint, timeout=120) as c:
        yield c


def _post(api, path, body, **kw):
    return requests.post(f"{api}{path}", json=body, timeout=120, **kw)


def _ollama_error(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]
    return body["error"]


def _check_timings(done, max_tokens):
    for key in TIMINGS:
        assert isinstance(done[key], int), (key, done)
    assert done["load_duration"] == 0
    assert done["prompt_eval_count"] > 5 and 1 <= done["eval_count"] <= max_tokens
    assert done["prompt_eval_duration"] > 0 and done["eval_duration"] > 0
    assert done["total_duration"] >= done["prompt_eval_duration"] + done["eval_duration"]


def _validates(answer):
    data = json.loads(answer)
    assert set(data) == {"color", "bright"}
    assert data["color"] in ("red", "green", "blue") and isinstance(data["bright"], bool)


# ---- models --------------------------------------------------------------------------


def test_heartbeat_version_list_ps_and_show(api, client):
    assert requests.head(api + "/", timeout=10).status_code == 200
    assert requests.get(api + "/api/version", timeout=10).json()["version"]
    listed = {m.model: m for m in client.list().models}
    gemma = listed[f"{GEMMA_UID}:latest"]
    assert gemma.size > 100_000_000 and len(gemma.digest) == 64 and gemma.modified_at
    assert gemma.details.format == "gguf" and gemma.details.family == "gemma-3"
    assert gemma.details.parameter_size == "270M" and gemma.details.quantization_level == "Q4_K_M"
    running = {m.model: m for m in client.ps().models}
    assert running[f"{GEMMA_UID}:latest"].context_length == 2048
    shown = client.show(f"{GEMMA_UID}:latest")
    assert shown.modelinfo["gemma-3.context_length"] == 2048
    assert shown.capabilities == ["completion"]
    assert "<start_of_turn>" in shown.template and 'stop "<end_of_turn>"' in shown.parameters
    assert shown.details.quantization_level == "Q4_K_M"


def test_pull_streams_progress_a_stream_cut_by_delete_ends_with_an_error(api, client):
    lines = list(client.pull("gemma-3", stream=True))
    assert lines[-1].status == "success"
    progress = [p for p in lines if p.total]
    assert progress and progress[-1].completed == progress[-1].total == 100
    assert client.pull("gemma-3:latest").status == "success"  # running already: at once
    assert "gemma-3:latest" in [m.model for m in client.list().models]
    stream = client.generate("gemma-3", "1, 2, 3, 4, 5,", raw=True, stream=True,
                             options={"temperature": 0, "repeat_penalty": 1.0, "num_predict": 1500})
    assert not next(stream).done
    assert client.delete("gemma-3").status == "success"
    with pytest.raises(ollama.ResponseError) as cut:
        for _ in stream:
            pass
    assert cut.value.error  # the stream's last line was {"error": ...}, not a done object
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete("gemma-3")
    assert gone.value.status_code == 404 and "not found" in gone.value.error


def test_a_pull_whose_launch_fails_ends_with_an_error_line(api, client):
    # a builtin family whose weights must be downloaded, from a hub that cannot be reached
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.pull("qwen1.5-chat", stream=True))
    assert "Could not download Qwen/Qwen1.5-0.5B-Chat" in streamed.value.error
    assert "HF_ENDPOINT" in streamed.value.error
    with pytest.raises(ollama.ResponseError) as whole:
        client.pull("qwen1.5-chat")
    assert whole.value.status_code == 503 and "Could not download" in whole.value.error
    assert "qwen1.5-chat:latest" not in [m.model for m in client.list().models]


def test_unknown_models_are_404_in_ollamas_shape(api, client):
    calls = (lambda: client.chat("nope", messages=ASK), lambda: client.generate("nope", "hi"),
             lambda: client.show("nope"), lambda: client.delete("nope:latest"),
             lambda: client.embed("nope", "hi"), lambda: client.pull("no-such-family"),
             lambda: list(client.chat("nope", messages=ASK, stream=True)))
    for call in calls:
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 404 and "not found" in err.value.error, err.value
    assert "model 'nope:latest' not found" in _ollama_error(
        _post(api, "/api/chat", {"model": "nope:latest", "messages": ASK}), 404)
    # the OpenAI routes keep their own error shape
    r = _post(api, "/v1/chat/completions", {"model": "nope", "messages": ASK})
    assert r.status_code == 404 and r.json()["detail"] and r.json()["error"]["type"] == "not_found_error"


# ---- generation ----------------------------------------------------------------------


def test_chat_streamed_and_not_match_each_other_and_the_openai_route(api, client):
    whole = client.chat(GEMMA_UID, messages=ASK, options=GREEDY)
    assert whole.done and whole.done_reason in ("stop", "length") and whole.message.role == "assistant"
    _check_timings(whole.model_dump(), 8)
    parts = list(client.chat(f"{GEMMA_UID}:latest", messages=ASK, options=GREEDY, stream=True))
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content for p in parts) == whole.message.content
    openai = _post(api, "/v1/chat/completions", {"model": GEMMA_UID, "messages": ASK, "max_tokens": 8,
                                                 "temperature": 0}).json()
    assert openai["choices"][0]["message"]["content"] == whole.message.content
    assert openai["usage"]["completion_tokens"] == whole.eval_count


def test_generate_templated_raw_and_streamed(api, client):
    templated = client.generate(GEMMA_UID, "Name a color.", options=GREEDY)
    chat = client.chat(GEMMA_UID, messages=ASK, options=GREEDY)
    assert templated.response == chat.message.content and templated.done
    _check_timings(templated.model_dump(), 8)
    raw = client.generate(GEMMA_UID, "The capital of France is", raw=True, options=GREEDY)
    completion = _post(api, "/v1/completions", {"model": GEMMA_UID, "prompt": "The capital of France is",
                                                 "max_tokens": 8, "temperature": 0}).json()
    assert raw.response == completion["choices"][0]["text"]
    parts = list(client.generate(GEMMA_UID, "The capital of France is", raw=True, options=GREEDY,
                                 stream=True))
    assert "".join(p.response for p in parts) == raw.response and parts[-1].done


def test_ndjson_framing_done_object_and_timings_over_raw_http(api):
    # no "stream" key: Ollama streams by default
    body = {"model": GEMMA_UID, "messages": ASK, "options": {"num_predict": 6, "temperature": 0}}
    with _post(api, "/api/chat", body, stream=True) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert all(not x["done"] and set(x) == {"model", "created_at", "message", "done"} for x in lines[:-1])
    done = lines[-1]
    assert done["done"] is True and done["done_reason"] in ("stop", "length")
    assert done["message"] == {"role": "assistant", "content": ""} and done["model"] == GEMMA_UID
    datetime.fromisoformat(done["created_at"].replace("Z", "+00:00"))
    _check_timings(done, 6)
    # curl's `-d` posts JSON as a form (as in Ollama's own docs): refused, since a web page
    # may post a form to any site; the answer says how to send JSON
    body = json.dumps({"model": GEMMA_UID, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    r = requests.post(f"{api}/api/generate", timeout=60, data=body,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "--json" in _ollama_error(r, 415)
    r = requests.post(f"{api}/api/generate", timeout=60, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["done"] is True and r.json()["eval_count"] <= 2


def test_loading_a_model_with_an_empty_request(api):
    r = _post(api, "/api/chat", {"model": GEMMA_UID, "messages": []})
    assert r.json()["done"] is True and r.json()["done_reason"] == "load"
    r = _post(api, "/api/generate", {"model": f"{GEMMA_UID}:latest", "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"  # said, but the cluster keeps serving it
    assert _post(api, "/api/generate", {"model": GEMMA_UID, "prompt": "Hi", "stream": False,
                                        "options": {"num_predict": 2}}).status_code == 200


def test_format_json_and_schema_constrain_the_real_model(api, client):
    free = client.chat(GEMMA_UID, messages=FEW_SHOT, options={"num_predict": 30, "temperature": 0})
    with pytest.raises(json.JSONDecodeError):
        json.loads(free.message.content)  # without a format it does not stop at the object
    constrained = client.chat(GEMMA_UID, messages=FEW_SHOT, format="json",
                              options={"num_predict": 60, "temperature": 0})
    assert constrained.done_reason == "stop"
    assert json.loads(constrained.message.content)["animal"] == "dog"
    ask = [{"role": "user", "content": "Pick a color and say if it is bright."}]
    _validates(client.chat(GEMMA_UID, messages=ask, format=SCHEMA,
                           options={"num_predict": 40, "temperature": 0}).message.content)
    _validates(client.generate(GEMMA_UID, ask[0]["content"], format=SCHEMA,
                               options={"num_predict": 40, "temperature": 0}).response)
    # the OpenAI route's response_format takes the same path
    body = {"model": GEMMA_UID, "messages": ask, "max_tokens": 40, "temperature": 0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}}
    _validates(_post(api, "/v1/chat/completions", body).json()["choices"][0]["message"]["content"])
    body = {"model": GEMMA_UID, "messages": FEW_SHOT, "max_tokens": 60, "temperature": 0,
            "response_format": {"type": "json_object"}}
    assert isinstance(json.loads(_post(api, "/v1/chat/completions", body).json()
                                 ["choices"][0]["message"]["content"]), dict)


def test_bad_requests_are_400_in_ollamas_shape(api):
    base = {"model": GEMMA_UID, "messages": ASK, "stream": False, "options": {"num_predict": 2}}
    cases = [({"think": True}, "thinking"), ({"options": {"num_ctx": 100000, "num_predict": 2}}, "2048"),
             ({"messages": [{"role": "user", "content": "x", "images": ["aGVsbG8="]}]}, "images"),
             ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tool"),
             ({"format": "xml"}, "format"), ({"options": {"temperature": -1}}, "temperature"),
             ({"messages": [{"role": "bot", "content": "x"}]}, "role")]
    for extra, word in cases:
        assert word in _ollama_error(_post(api, "/api/chat", {**base, **extra}), 400), extra
    assert "suffix" in _ollama_error(_post(api, "/api/generate", {"model": GEMMA_UID, "prompt": "x",
                                                                  "suffix": "y"}), 400)
    assert _post(api, "/api/chat", {**base, "think": False}).status_code == 200
    r = requests.post(f"{api}/api/chat", data="{not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert "JSON" in _ollama_error(r, 400)
    assert "/api/pull" in _ollama_error(_post(api, "/api/copy", {"source": "a", "destination": "b"}), 501)


def test_a_client_that_disconnects_stops_generation(api):
    body = {"model": GEMMA_UID, "prompt": "1, 2, 3, 4, 5,", "raw": True,
            "options": {"num_predict": 1500, "temperature": 0, "repeat_penalty": 1.0}}
    r = _post(api, "/api/generate", body, stream=True)
    lines = r.iter_lines()
    for _ in range(3):
        assert not json.loads(next(lines))["done"]
    r.close()

    def idle():
        d = requests.get(f"{api}/v1/models/{GEMMA_UID}", timeout=10).json()
        return d["slots_busy"] == 0

    # 1500 tokens take well over 10 s here: a freed slot means decoding stopped
    wait_until(idle, 3.0, interval=0.05, what="all slots free")


# ---- embeddings ----------------------------------------------------------------------


def test_pull_an_embedding_model_embed_and_delete(api, client):
    pytest.importorskip("sentence_transformers")
    name = "all-MiniLM-L6-v2"
    assert client.pull(name).status == "success"
    try:
        out = client.embed(name, ["hello world", "你好，世界"])
        assert len(out.embeddings) == 2 and len(out.embeddings[0]) == 384
        assert out.prompt_eval_count > 4 and out.total_duration > 0
        ref = _post(api, "/v1/embeddings", {"model": name, "input": ["hello world", "你好，世界"]}).json()
        for ours, theirs in zip(out.embeddings, ref["data"]):
            assert max(abs(a - b) for a, b in zip(ours, theirs["embedding"])) < 1e-6
        single = client.embeddings(f"{name}:latest", "hello world").embedding
        assert max(abs(a - b) for a, b in zip(single, out.embeddings[0])) < 1e-6
        assert "embedding" in client.show(name).capabilities
        # Ollama truncates long inputs by default; truncate=false asks for the 400
        assert client.embed(name, "word " * 400).prompt_eval_count == 256
        with pytest.raises(ollama.ResponseError) as err:
            client.embed(name, "word " * 400, truncate=False)
        assert err.value.status_code == 400
    finally:
        client.delete(name)
    assert name not in [m.model.split(":")[0] for m in client.list().models]
