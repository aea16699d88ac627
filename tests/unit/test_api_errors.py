"""The REST layer in-process, against a fake supervisor: shapes, statuses, launch args."""

from typing import Any, Dict, List

import pytest
from fastapi.testclient import TestClient

from xinference.api.app import create_app
from xinference.errors import ConflictError, ModelNotFoundError, ModelNotReadyError


class FakeSupervisor:
    def __init__(self) -> None:
        self.launches: List[Dict[str, Any]] = []

    async def launch_model(self, request: Dict[str, Any], wait_ready: bool = True) -> str:
        if request["model_uid"] == "taken":
            raise ConflictError("Model 'taken' is already running.", param="model_uid")
        self.launches.append({**request, "wait_ready": wait_ready})
        return request["model_uid"] or "generated"

    async def locate(self, model_uid: str):
        if model_uid == "loading":
            raise ModelNotReadyError("Model loading is still loading; retry shortly.")
        raise ModelNotFoundError(f"Model not found in the model list, uid: {model_uid}.")

    async def describe_model(self, model_uid: str):
        raise ModelNotFoundError(f"Model not found in the model list, uid: {model_uid}.")

    async def list_models(self):
        return {}


@pytest.fixture
def client():
    sup = FakeSupervisor()
    app = create_app(sup, "127.0.0.1:1")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        c.sup = sup  # type: ignore[attr-defined]
        yield c


def _check(resp, status, type_=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["detail"] == body["error"]["message"]
    if type_:
        assert body["error"]["type"] == type_
    return body


MSG = [{"role": "user", "content": "x"}]


def test_not_found_and_not_ready(client):
    _check(client.post("/v1/chat/completions", json={"model": "m", "messages": MSG}), 404, "not_found_error")
    r = client.post("/v1/chat/completions", json={"model": "loading", "messages": MSG})
    _check(r, 503, "service_unavailable")
    assert r.headers["Retry-After"] == "2"
    _check(client.get("/v1/models/zzz"), 404)
    _check(client.get("/no/such/route"), 404)


def test_validation_is_400_openai_shape(client):
    body = _check(client.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "n": 129}), 400,
                  "invalid_request_error")
    assert body["error"]["param"] == "n"
    body = _check(client.post("/v1/completions", content=b"{", headers={"content-type": "application/json"}), 400)
    assert "not valid JSON" in body["error"]["message"]
    _check(client.post("/v1/completions", json={"model": "m", "prompt": ["a", {"b": 1}]}), 400)
    _check(client.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stop": list("abcde")}), 400)


def test_launch_accepts_xinference_client_payload(client):
    payload = {
        "model_uid": None, "model_name": "gemma-3", "model_engine": None, "peft_model_config": None,
        "model_type": "LLM", "model_size_in_billions": None, "model_format": None, "quantization": None,
        "replica": 1, "n_worker": 1, "n_gpu": "auto", "request_limits": None, "worker_ip": None,
        "gpu_idx": None, "replica_config": None, "model_path": None, "enable_thinking": None,
        "enable_virtual_env": None, "virtual_env_packages": None, "virtual_env_find_links": None,
        "envs": None, "n_ctx": 512, "verbose": None,
    }
    r = client.post("/v1/models", json=payload, params={"wait_ready": "false"})
    assert r.status_code == 200 and r.json() == {"model_uid": "generated"}
    sent = client.sup.launches[-1]
    assert sent["engine_kwargs"] == {"n_ctx": 512}  # nulls and management keys never reach the engine
    assert sent["wait_ready"] is False


def test_launch_rejects_what_it_cannot_honour(client):
    _check(client.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "taken"}), 409, "conflict_error")
    _check(client.post("/v1/models", json={"model_name": "gemma-3", "n_worker": 2}), 400)
    _check(client.post("/v1/models", json={"model_name": "gemma-3", "n_gpu": "lots"}), 400)
    _check(client.post("/v1/models", json={"model_name": "gemma-3", "replica": 0}), 400)


def test_validation_param_names_the_field_without_union_members(client):
    body = _check(client.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stop": 5}), 400)
    assert body["error"]["param"] == "stop"
    body = _check(client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user",
                                                                                         "content": 3}]}), 400)
    assert body["error"]["param"] == "messages.0.content"
