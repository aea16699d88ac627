"""LoRA adapters as model ids: launch with peft_model_config, name clashes, listing,
describe/terminate, and requests routed to the base model with lora_name set.

A real SupervisorActor and REST app, a fake worker whose replicas answer
"<replica uid>:<lora_name>" (tests/unit/fake_cluster.py)."""

import json

import pytest

from tests.unit.fake_cluster import lora_config
from xinference.errors import (
    ConflictError,
    InvalidRequestError,
    ModelNotFoundError,
    TooManyRequestsError,
)

pytestmark = pytest.mark.timeout(60)

MSG = [{"role": "user", "content": "hi"}]


def _launch(uid, *loras, **extra):
    req = {"model_name": "gemma-3", "model_uid": uid, **extra}
    if loras:
        req["peft_model_config"] = lora_config(*loras)
    return req


# ---- supervisor --------------------------------------------------------------


async def test_supervisor_resolves_lists_and_describes_adapters(stack):
    sup = stack.supervisor
    await sup.launch_model(_launch("m", "sql", "chat"))
    plan = (await stack.worker.launched())["m-0"]
    assert plan["engine"] == "Transformers"  # the engine that can load adapters
    assert plan["lora_list"] == [{"lora_name": "sql", "local_path": "/loras/sql"},
                                 {"lora_name": "chat", "local_path": "/loras/chat"}]
    assert plan["engine_kwargs"] == {}

    assert await sup.locate("sql") == {
        "model_uid": "m", "lora_name": "sql", "lora_names": ["sql", "chat"], "request_limits": None,
        "replicas": [{"replica_uid": "m-0", "address": stack.address}],
        "model_ability": ["generate", "chat"], "context_length": 128,
    }
    assert (await sup.locate("m"))["lora_name"] is None
    assert (await sup.locate("gemma-3"))["lora_name"] is None  # by model name

    listed = await sup.list_models()
    assert list(listed) == ["m", "sql", "chat"]
    assert listed["m"]["lora_adapters"] == plan["lora_list"]
    assert "parent" not in listed["m"]
    sql = listed["sql"]
    assert sql["parent"] == "m" and sql["lora_name"] == "sql" and sql["model_uid"] == "m"
    assert sql["model_name"] == "gemma-3" and sql["status"] == "READY" and "lora_adapters" not in sql
    assert await sup.describe_model("chat") == listed["chat"]
    assert (await sup.model_progress("chat"))["progress"] == 1.0


async def test_supervisor_terminates_only_base_models(stack):
    sup = stack.supervisor
    await sup.launch_model(_launch("m", "sql"))
    with pytest.raises(InvalidRequestError, match="sql is a LoRA adapter of model m.*terminate m"):
        await sup.terminate_model("sql")
    assert list(await sup.list_models()) == ["m", "sql"]
    await sup.terminate_model("m")
    assert await sup.list_models() == {}
    with pytest.raises(ModelNotFoundError):
        await sup.locate("sql")
    with pytest.raises(ModelNotFoundError):
        await sup.describe_model("sql")
    # the name is free again
    await sup.launch_model(_launch("other", "sql"))
    assert (await sup.locate("sql"))["model_uid"] == "other"


@pytest.mark.parametrize(
    "request_, message",
    [
        (_launch("x", "m"), "'m' is the uid of a running model"),
        (_launch("x", "sql"), "'sql' is already a LoRA adapter of running model m"),
        (_launch("x", "x"), "'x' is the uid of the model being launched"),
        (_launch("sql"), "'sql' is the name of a LoRA adapter of running model m"),
    ],
)
async def test_name_clashes_are_conflicts_and_launch_nothing(stack, request_, message):
    sup = stack.supervisor
    await sup.launch_model(_launch("m", "sql"))
    with pytest.raises(ConflictError, match=message):
        await sup.launch_model(request_)
    assert list(await stack.worker.launched()) == ["m-0"]
    assert list(await sup.list_models()) == ["m", "sql"]
    # a free name still launches next to it
    await sup.launch_model(_launch("x", "chat"))
    assert list(await sup.list_models()) == ["m", "sql", "x", "chat"]


# ---- REST ----------------------------------------------------------------------


CLIENT_PAYLOAD = {  # what xinference-client's launch_model posts
    "model_uid": "m", "model_name": "gemma-3", "model_engine": None, "model_type": "LLM",
    "model_size_in_billions": None, "model_format": None, "quantization": None, "replica": 1,
    "n_worker": 1, "n_gpu": "auto", "request_limits": None, "worker_ip": None, "gpu_idx": None,
    "replica_config": None, "model_path": None, "enable_thinking": None, "enable_virtual_env": None,
    "virtual_env_packages": None, "virtual_env_find_links": None, "envs": None,
    "peft_model_config": lora_config("sql", image_keys=True),
}


async def test_rest_launch_takes_peft_model_config_and_lists_adapters(stack):
    r = await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)
    assert r.status_code == 200, r.text
    assert r.json() == {"model_uid": "m"}
    plan = (await stack.worker.launched())["m-0"]
    assert [s["lora_name"] for s in plan["lora_list"]] == ["sql"]
    assert plan["engine_kwargs"] == {}  # peft_model_config is no engine kwarg

    data = (await stack.http.get("/v1/models")).json()["data"]
    assert [d["id"] for d in data] == ["m", "sql"]
    base, sql = data
    assert base["lora_adapters"] == [{"lora_name": "sql", "local_path": "/loras/sql"}]
    assert sql["object"] == "model" and sql["owned_by"] == "xinference"
    assert sql["parent"] == "m" and sql["lora_name"] == "sql"
    # what xinference-client's list_models and `xinference list` read
    for key in ("model_type", "model_name", "model_engine", "model_format", "model_ability",
                "model_size_in_billions", "quantization", "replica", "status", "context_length"):
        assert sql[key] == base[key], key

    # an adapter is no instance of its own
    rows = (await stack.http.get("/v1/models/instances")).json()
    assert [row["model_uid"] for row in rows] == ["m"]


async def test_rest_bad_peft_model_config_is_400(stack):
    bad = {**CLIENT_PAYLOAD, "peft_model_config": {"lora_list": [{"lora_name": "sql"}]}}
    r = await stack.http.post("/v1/models", json=bad)
    assert r.status_code == 400 and r.json()["error"]["param"] == "peft_model_config"
    # a launch with no adapters (the common null) still goes to the default engine
    r = await stack.http.post("/v1/models", json={**CLIENT_PAYLOAD, "peft_model_config": None})
    assert r.status_code == 200, r.text
    assert (await stack.worker.launched())["m-0"]["lora_list"] == []


async def _chat(stack, **body):
    return await stack.http.post("/v1/chat/completions", json={"messages": MSG, **body})


async def test_rest_model_naming_an_adapter_routes_to_its_base_model(stack):
    assert (await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    cases = [
        ({"model": "sql"}, "m-0:sql"),
        ({"model": "m", "lora_name": "sql"}, "m-0:sql"),
        ({"model": "sql", "lora_name": "sql"}, "m-0:sql"),
        ({"model": "m"}, "m-0:None"),
        ({"model": "m", "lora_name": ""}, "m-0:None"),
        ({"model": "gemma-3"}, "m-0:None"),
        ({"model": "sql"}, "m-0:sql"),  # from the cached route
    ]
    for body, text in cases:
        r = await _chat(stack, **body)
        assert r.status_code == 200, (body, r.text)
        out = r.json()
        assert out["choices"][0]["message"]["content"] == text, body
        assert out["model"] == body["model"]
    sent = await stack.replica_params("m-0")
    assert [p["lora_name"] for p in sent] == ["sql", "sql", "sql", None, None, None, "sql"]

    # completions, streamed
    r = await stack.http.post("/v1/completions", json={"model": "sql", "prompt": "x", "stream": True})
    assert r.status_code == 200
    chunks = [json.loads(line[5:]) for line in r.text.splitlines()
              if line.startswith("data:") and "[DONE]" not in line]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "m-0:sql"
    assert chunks[0]["model"] == "sql"


async def test_rest_adapter_model_with_another_lora_name_is_400(stack):
    assert (await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    for stream in (False, True):
        r = await _chat(stack, model="sql", lora_name="other", stream=stream)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["error"]["param"] == "lora_name" and body["error"]["type"] == "invalid_request_error"
        assert "'sql' is a LoRA adapter" in body["detail"] and "'other'" in body["detail"]
    assert await stack.replica_params("m-0") == []  # the replica never saw them


async def test_rest_lora_name_the_model_does_not_have_is_400(stack):
    assert (await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    await stack.supervisor.launch_model(_launch("plain"))  # llama.cpp, no adapters
    for model, detail in [("m", "Model m has no LoRA adapter 'nope'; its adapters: sql."),
                          ("plain", "Model plain has no LoRA adapter 'sql'; it was launched without adapters.")]:
        for stream in (False, True):
            r = await _chat(stack, model=model, lora_name=detail.split("'")[1], stream=stream)
            assert r.status_code == 400, r.text
            assert r.json()["detail"] == detail and r.json()["error"]["param"] == "lora_name"
    assert await stack.replica_params("m-0") == [] and await stack.replica_params("plain-0") == []
    # the base model itself still answers
    assert (await _chat(stack, model="plain")).json()["choices"][0]["message"]["content"] == "plain-0:None"


async def test_rest_describe_and_terminate_adapters(stack):
    http = stack.http
    assert (await http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    desc = (await http.get("/v1/models/sql")).json()
    assert desc["parent"] == "m" and desc["lora_name"] == "sql" and desc["model_uid"] == "m"
    assert desc["status"] == "READY" and desc["model_name"] == "gemma-3"
    assert (await http.get("/v1/models/m")).json()["lora_adapters"][0]["lora_name"] == "sql"

    r = await http.delete("/v1/models/sql")
    assert r.status_code == 400, r.text
    assert "adapter of model m" in r.json()["detail"] and "terminate m" in r.json()["detail"]
    assert [d["id"] for d in (await http.get("/v1/models")).json()["data"]] == ["m", "sql"]

    assert (await _chat(stack, model="sql")).status_code == 200  # caches the route
    assert (await http.delete("/v1/models/m")).status_code == 200
    assert (await http.get("/v1/models")).json()["data"] == []
    assert (await _chat(stack, model="sql")).status_code == 404
    assert (await http.get("/v1/models/sql")).status_code == 404

    # the same adapter name on a new model: requests follow it there
    payload = {**CLIENT_PAYLOAD, "model_uid": "m2"}
    assert (await http.post("/v1/models", json=payload)).status_code == 200
    r = await _chat(stack, model="sql")
    assert r.json()["choices"][0]["message"]["content"] == "m2-0:sql"


async def test_rest_launch_clash_is_409(stack):
    assert (await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    r = await stack.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "sql"})
    assert r.status_code == 409 and r.json()["error"]["type"] == "conflict_error"
    r = await stack.http.post("/v1/models", json={**CLIENT_PAYLOAD, "model_uid": "x"})
    assert r.status_code == 409 and "already a LoRA adapter of running model m" in r.json()["detail"]


async def test_adapter_requests_count_against_the_base_models_limit(stack):
    r = await stack.http.post("/v1/models", json={**CLIENT_PAYLOAD, "request_limits": 1})
    assert r.status_code == 200, r.text
    router = stack.app.state.replicas
    async with router.acquire("sql") as lease:
        assert lease.lora_name == "sql" and lease.replica.replica_uid == "m-0"
        with pytest.raises(TooManyRequestsError):
            async with router.acquire("m"):
                pass
    async with router.acquire("m") as lease:
        assert lease.lora_name is None


async def test_terminating_a_model_forgets_every_name_that_led_to_it(stack):
    assert (await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    assert (await _chat(stack, model="sql")).status_code == 200  # caches sql -> (m, sql)
    assert (await stack.http.delete("/v1/models/m")).status_code == 200
    # m again, without adapters, launched behind the REST server's back
    await stack.supervisor.launch_model(_launch("m"))
    assert (await _chat(stack, model="m")).status_code == 200
    r = await _chat(stack, model="sql")
    assert r.status_code == 404, r.text


async def test_a_launch_re_resolves_cached_names(stack):
    assert (await stack.http.post("/v1/models", json=CLIENT_PAYLOAD)).status_code == 200
    r = await _chat(stack, model="gemma-3")  # the model name: resolves to m
    assert r.json()["choices"][0]["message"]["content"] == "m-0:None"
    # now a model whose uid is that string: an exact uid wins over a model name
    r = await stack.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "gemma-3"})
    assert r.status_code == 200, r.text
    r = await _chat(stack, model="gemma-3")
    assert r.json()["choices"][0]["message"]["content"] == "gemma-3-0:None"
