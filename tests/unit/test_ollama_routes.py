"""The Ollama routes in-process: a real SupervisorActor and REST app over a fake worker
whose replicas answer "<replica uid>:<lora_name>" (tests/unit/fake_cluster.py). What
reaches the replica, NDJSON framing, pull/tags/show/delete, errors in Ollama's shape."""

import json

import pytest

from tests.unit.fake_cluster import lora_config, running_stack

pytestmark = pytest.mark.timeout(60)

ASK = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def stack():
    async with running_stack() as s:
        await s.supervisor.launch_model({"model_name": "gemma-3", "model_uid": "m",
                                         "peft_model_config": lora_config("sql")})
        yield s


def _lines(resp):
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in resp.text.splitlines()]


async def test_options_and_format_reach_the_replica_as_sampling_params(stack):
    r = await stack.http.post("/api/chat", json={
        "model": "m:latest", "messages": ASK, "stream": False, "format": "json",
        "options": {"num_predict": 5, "temperature": 0.2, "top_k": 3, "stop": "x", "seed": 9}})
    assert r.status_code == 200, r.text
    params = (await stack.replica_params("m-0"))[-1]
    assert params["max_tokens"] == 5 and params["temperature"] == 0.2 and params["top_k"] == 3
    assert params["stop"] == ["x"] and params["seed"] == 9 and params["json_schema"] == {"type": "object"}
    assert params["top_p"] == 0.9 and params["repetition_penalty"] == 1.1  # Ollama's defaults
    # an adapter named as the model goes through the same LoRA routing as on /v1
    r = await stack.http.post("/api/generate", json={"model": "sql", "prompt": "hi", "stream": False})
    assert r.json()["response"] == "m-0:sql"
    assert (await stack.replica_params("m-0"))[-1]["lora_name"] == "sql"


async def test_chat_and_generate_stream_ndjson_ending_in_a_done_object(stack):
    lines = _lines(await stack.http.post("/api/chat", json={"model": "m", "messages": ASK}))
    assert [x["done"] for x in lines] == [False, True]
    assert lines[0]["message"] == {"role": "assistant", "content": "m-0:None"}
    done = lines[-1]
    assert done["done_reason"] == "stop" and done["message"]["content"] == ""
    assert done["prompt_eval_count"] == 1 and done["eval_count"] == 1 and done["load_duration"] == 0
    assert done["total_duration"] >= done["prompt_eval_duration"] + done["eval_duration"]
    gen = _lines(await stack.http.post("/api/generate", json={"model": "m", "prompt": "hi"}))
    assert gen[0]["response"] == "m-0:None" and gen[-1]["done"] is True and "message" not in gen[-1]
    whole = (await stack.http.post("/api/chat", json={"model": "m", "messages": ASK,
                                                      "stream": False})).json()
    assert whole["message"]["content"] == "m-0:None" and whole["done"] is True


async def test_tags_show_pull_and_delete(stack):
    tags = (await stack.http.get("/api/tags")).json()["models"]
    # adapters are models too, each naming the model that serves it
    assert {t["name"]: t["details"]["parent_model"] for t in tags} == {"m:latest": "", "sql:latest": "m"}
    shown = (await stack.http.post("/api/show", json={"model": "m"})).json()
    assert shown["model_info"]["gemma-3.context_length"] == 128 and shown["capabilities"] == ["completion"]
    assert "<start_of_turn>" in shown["template"] and "num_ctx 128" in shown["parameters"]
    lines = _lines(await stack.http.post("/api/pull", json={"model": "gemma-3"}))
    assert lines[0]["status"] == "pulling manifest" and lines[-1] == {"status": "success"}
    assert {"status": "loading gemma-3", "completed": 100, "total": 100} in lines
    assert "gemma-3-0" in await stack.worker.launched()
    again = await stack.http.post("/api/pull", json={"name": "gemma-3:latest", "stream": False})
    assert again.json() == {"status": "success"}
    assert len(await stack.worker.launched()) == 2  # running already: nothing launched
    assert (await stack.http.request("DELETE", "/api/delete", json={"model": "gemma-3"})).status_code == 200
    assert "gemma-3" not in await stack.supervisor.list_models()


async def test_errors_take_ollamas_shape_only_on_its_routes(stack):
    for path, body in (("/api/chat", {"model": "nope", "messages": ASK}),
                       ("/api/generate", {"model": "nope:latest", "prompt": "x"}),
                       ("/api/show", {"model": "nope"}), ("/api/pull", {"model": "no-family"})):
        r = await stack.http.post(path, json=body)
        assert r.status_code == 404 and set(r.json()) == {"error"}, (path, r.text)
        assert "not found" in r.json()["error"]
    r = await stack.http.request("DELETE", "/api/delete", json={"model": "nope"})
    assert r.status_code == 404 and r.json() == {"error": "model 'nope' not found; pull it first "
                                                          "(POST /api/pull) or launch it"}
    r = await stack.http.post("/api/chat", json={"messages": ASK})
    assert r.status_code == 400 and "model" in r.json()["error"]
    r = await stack.http.post("/api/chat", json={"model": "m", "messages": ASK, "stream": False,
                                                 "options": {"num_ctx": 4096}})
    assert r.status_code == 400 and "128" in r.json()["error"]
    r = await stack.http.get("/api/no/such/route")
    assert r.status_code == 404 and set(r.json()) == {"error"}
    r = await stack.http.post("/v1/chat/completions", json={"model": "nope", "messages": ASK})
    assert r.status_code == 404 and r.json()["detail"] and r.json()["error"]["code"] == "model_not_found"
