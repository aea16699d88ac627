"""--auth-config in-process: keys, tokens, permissions per route family, quotas."""

import json
import time
from typing import Any, Dict

import jwt
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from xinference.api.app import create_app
from xinference.api.auth.config import AuthConfig, AuthConfigError, load_auth_config
from xinference.api.auth.middleware import flat_routes
from xinference.api.auth.permissions import ROUTES
from xinference.api.auth.principal import Principal
from xinference.api.auth.quotas import Quotas
from xinference.api.settings import ServerSettings
from xinference.errors import ModelNotFoundError, QuotaExceededError

SECRET = "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7"
CONFIG: Dict[str, Any] = {
    "auth_config": {"algorithm": "HS256", "secret_key": SECRET, "token_expire_in_minutes": 30},
    "user_config": [
        {"username": "admin", "password": "pw-admin", "permissions": ["admin"], "api_keys": ["sk-adminadmin01"]},
        {"username": "reader", "password": "pw-reader", "permissions": ["models:list", "models:read"],
         "api_keys": ["sk-readerreader", {"key": "sk-limitedlimit", "requests_per_minute": 2}]},
        {"username": "lister", "password": "pw-lister", "permissions": ["models:list"],
         "api_keys": ["sk-listerlister"]},
    ],
}


class FakeSupervisor:
    def __init__(self) -> None:
        self.launches = []

    async def launch_model(self, request, wait_ready=True):
        self.launches.append(request)
        return request["model_uid"] or "generated"

    async def locate(self, model_uid):
        raise ModelNotFoundError(f"Model not found in the model list, uid: {model_uid}.")

    async def describe_model(self, model_uid):
        raise ModelNotFoundError(f"Model not found in the model list, uid: {model_uid}.")

    async def list_models(self):
        return {}

    async def list_workers(self):
        return []


@pytest.fixture
def client():
    sup = FakeSupervisor()
    settings = ServerSettings(auth=AuthConfig.model_validate(CONFIG))
    app = create_app(sup, "127.0.0.1:1", settings)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        c.sup = sup  # type: ignore[attr-defined]
        yield c


def bearer(key: str) -> Dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


MSG = {"model": "m", "messages": [{"role": "user", "content": "x"}]}


def _error(resp, status: int, code=None):
    assert resp.status_code == status, resp.text
    body = resp.json()
    if "detail" in body:  # the OpenAI shape (Ollama's routes carry a plain "error" string)
        assert body["detail"] == body["error"]["message"]
        if code:
            assert body["error"]["code"] == code
    return body


def test_every_route_has_a_permission():
    app = create_app(FakeSupervisor(), "127.0.0.1:1")
    routes = [r for r in flat_routes(app) if isinstance(r, APIRoute)]
    assert len(routes) > 30
    missing = [(m, r.path) for r in routes for m in r.methods if (m, r.path) not in ROUTES]
    assert not missing, f"routes without an entry in api/auth/permissions.py: {missing}"


def test_public_routes_and_auth_flag(client):
    assert client.get("/status").status_code == 200
    assert client.get("/v1/cluster/auth").json() == {"auth": True}


def test_missing_bad_and_wrong_scheme(client):
    r = client.get("/v1/models")
    _error(r, 401, "missing_credentials")
    assert r.headers["WWW-Authenticate"] == "Bearer"
    _error(client.get("/v1/models", headers=bearer("sk-nope-nope")), 401, "invalid_credentials")
    _error(client.get("/v1/models", headers={"Authorization": "Basic c2stYWRtaW5hZG1pbjAx"}), 401)
    # Ollama's routes answer in Ollama's shape
    r = client.post("/api/chat", json={"model": "m", "messages": []})
    assert r.status_code == 401 and isinstance(r.json()["error"], str)


def test_unauthenticated_learn_nothing_from_the_body(client):
    # the credentials are checked before the body is parsed
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    _error(r, 401)


@pytest.mark.parametrize("method,path,body", [
    ("post", "/v1/models", {"model_name": "gemma-3"}),
    ("delete", "/v1/models/x", None),
    ("post", "/v1/model_registrations/LLM", {"model": "{}"}),
    ("delete", "/v1/model_registrations/LLM/x", None),
    ("get", "/v1/cache/models", None),
    ("get", "/v1/workers", None),
    ("get", "/v1/address", None),
    ("get", "/v1/auth/usage", None),
    ("post", "/api/pull", {"model": "gemma-3"}),
    ("get", "/metrics", None),
])
def test_reader_lacks_management_permissions(client, method, path, body):
    kwargs = {"json": body} if body is not None else {}
    r = getattr(client, method)(path, headers=bearer("sk-readerreader"), **kwargs)
    _error(r, 403, None if path.startswith("/api/") else "permission_denied")
    assert client.sup.launches == []


def test_inference_needs_models_read(client):
    _error(client.post("/v1/chat/completions", json=MSG, headers=bearer("sk-listerlister")), 403)
    r = client.post("/api/generate", json={"model": "m", "prompt": "x"}, headers=bearer("sk-listerlister"))
    assert r.status_code == 403
    # with the permission the request goes through (to a 404: no such model)
    _error(client.post("/v1/chat/completions", json=MSG, headers=bearer("sk-readerreader")), 404)
    assert client.get("/v1/models", headers=bearer("sk-listerlister")).status_code == 200


def test_admin_may_do_everything(client):
    r = client.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "g"}, headers=bearer("sk-adminadmin01"))
    assert r.status_code == 200, r.text
    assert client.sup.launches and client.sup.launches[0]["model_uid"] == "g"
    assert client.get("/v1/address", headers=bearer("sk-adminadmin01")).json() == "127.0.0.1:1"


def test_login_json_and_form(client):
    r = client.post("/token", json={"username": "reader", "password": "pw-reader"})
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert r.json()["token_type"] == "bearer"
    assert client.get("/v1/models", headers=bearer(token)).status_code == 200
    _error(client.post("/v1/models", json={"model_name": "x"}, headers=bearer(token)), 403)
    r = client.post("/token", data={"username": "admin", "password": "pw-admin", "grant_type": "password"})
    assert r.status_code == 200, r.text
    _error(client.post("/token", json={"username": "admin", "password": "wrong"}), 401, "invalid_credentials")
    _error(client.post("/token", json={"username": "ghost", "password": "pw-admin"}), 401)
    _error(client.post("/token", json={"username": 1, "password": []}), 400)


def test_expired_and_forged_tokens(client):
    now = int(time.time())
    expired = jwt.encode({"sub": "admin", "iat": now - 100, "exp": now - 10}, SECRET, algorithm="HS256")
    _error(client.get("/v1/models", headers=bearer(expired)), 401, "token_expired")
    forged = jwt.encode({"sub": "admin", "exp": now + 100}, "another-secret-of-enough-length-32b", algorithm="HS256")
    _error(client.get("/v1/models", headers=bearer(forged)), 401, "invalid_credentials")
    unsigned = jwt.encode({"sub": "admin", "exp": now + 100}, None, algorithm="none")
    _error(client.get("/v1/models", headers=bearer(unsigned)), 401)
    ghost = jwt.encode({"sub": "ghost", "exp": now + 100}, SECRET, algorithm="HS256")
    _error(client.get("/v1/models", headers=bearer(ghost)), 401)


def test_requests_per_minute_quota(client):
    for _ in range(2):
        _error(client.post("/v1/chat/completions", json=MSG, headers=bearer("sk-limitedlimit")), 404)
    r = client.post("/v1/chat/completions", json=MSG, headers=bearer("sk-limitedlimit"))
    _error(r, 429, "quota_exceeded")
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    # another key of the same user has its own counter; listing is not metered
    _error(client.post("/v1/chat/completions", json=MSG, headers=bearer("sk-readerreader")), 404)
    assert client.get("/v1/models", headers=bearer("sk-limitedlimit")).status_code == 200
    rows = client.get("/v1/auth/usage", headers=bearer("sk-adminadmin01")).json()["data"]
    limited = [row for row in rows if row["key"].startswith("sk-lim")]
    assert limited[0]["requests"] == 2 and limited[0]["requests_per_minute_limit"] == 2
    assert "sk-limitedlimit" not in json.dumps(rows)  # keys are masked


def test_tokens_per_day_quota():
    clock = [1_000_000.0]
    quotas = Quotas(clock=lambda: clock[0])
    from xinference.api.auth.config import Quota

    p = Principal("u", frozenset(), "key:1", "sk-1…", Quota(tokens_per_day=100))
    quotas.admit(p)
    quotas.record(p, 60, 50)
    with pytest.raises(QuotaExceededError) as e:
        quotas.admit(p)
    assert 0 < e.value.retry_after <= 86400
    clock[0] += e.value.retry_after  # the next UTC day
    quotas.admit(p)


def test_config_errors(tmp_path):
    bad = tmp_path / "auth.json"
    bad.write_text("{")
    with pytest.raises(AuthConfigError, match="not valid JSON"):
        load_auth_config(str(bad))
    cfg = json.loads(json.dumps(CONFIG))
    cfg["user_config"][0]["permissions"] = ["root"]
    bad.write_text(json.dumps(cfg))
    with pytest.raises(AuthConfigError, match="unknown permissions"):
        load_auth_config(str(bad))
    cfg = json.loads(json.dumps(CONFIG))
    cfg["user_config"][1]["api_keys"] = ["sk-adminadmin01"]
    bad.write_text(json.dumps(cfg))
    with pytest.raises(AuthConfigError, match="listed twice"):
        load_auth_config(str(bad))
    with pytest.raises(AuthConfigError, match="cannot read"):
        load_auth_config(str(tmp_path / "missing.json"))


async def test_internal_addresses_are_for_admins_only():
    from tests.unit.fake_cluster import running_stack

    settings = ServerSettings(auth=AuthConfig.model_validate(CONFIG))
    async with running_stack(settings=settings) as stack:
        r = await stack.http.post("/v1/models", json={"model_name": "gemma-3", "model_uid": "g"},
                                  headers=bearer("sk-adminadmin01"))
        assert r.status_code == 200, r.text
        for path in ("/v1/models", "/v1/models/g", "/v1/models/g/replicas", "/v1/models/g/progress"):
            admin = (await stack.http.get(path, headers=bearer("sk-adminadmin01"))).text
            reader = await stack.http.get(path, headers=bearer("sk-readerreader"))
            assert reader.status_code == 200, reader.text
            assert stack.address in admin or path.endswith("progress")
            assert stack.address not in reader.text and "address" not in reader.text, (path, reader.text)


def test_model_events_name_no_internal_port_to_non_admins():
    from xinference.api import context
    from xinference.api.auth.config import Quota
    from xinference.api.auth.redact import events_for_caller

    events = [{"time": 1.0, "kind": "relaunching", "replica_uid": "m-0",
               "message": "on worker 10.1.2.3:39345 (was [::1]:8080)"}]
    assert events_for_caller(events) == events  # no --auth-config
    for perms, seen in ((frozenset({"admin"}), "on worker 10.1.2.3:39345 (was [::1]:8080)"),
                        (frozenset({"models:read"}), "on worker 10.1.2.3 (was [::1])")):
        token = context.principal.set(Principal("u", perms, "key:1", "sk-1…", Quota()))
        try:
            assert events_for_caller(events)[0]["message"] == seen
        finally:
            context.principal.reset(token)
