"""The REST app's defences against web pages and its request ids, in process over the
fake cluster (tests/unit/fake_cluster.py): Host and Origin rules, CORS, JSON-only
bodies, the body size limit, X-Request-Id, generic 500s, streams that fail mid-way,
405 for a known path's wrong method."""

import json
import logging

import pytest

from tests.unit.fake_cluster import running_stack
from xinference.api import middleware
from xinference.api.gateway import Generation
from xinference.api.origins import OriginPolicy, is_loopback, normal_origin, split_host
from xinference.api.request_log import RequestIdFilter
from xinference.api.settings import ServerSettings

pytestmark = pytest.mark.timeout(60)

ASK = [{"role": "user", "content": "hi"}]
CHAT = {"model": "m", "messages": ASK}
EVIL = "http://evil.example"


async def _nothing_launched(stack) -> bool:
    return not await stack.worker.launched() and not await stack.supervisor.list_models()


# ---- Host ----------------------------------------------------------------------------

async def test_a_loopback_server_answers_only_to_loopback_host_names(stack):
    for host in ("evil.example", "evil.example:9997", "192.168.1.20:9997", "127.0.0.1.evil.example"):
        r = await stack.http.get("/v1/models", headers={"Host": host})
        assert r.status_code == 403, host
        assert "DNS rebinding" in r.json()["detail"]
    r = await stack.http.get("/api/tags", headers={"Host": "evil.example"})
    assert r.status_code == 403 and set(r.json()) == {"error"}  # Ollama's shape on /api/*
    for host in ("127.0.0.1", "127.0.0.1:9997", "127.1.2.3:80", "localhost", "LOCALHOST:9997",
                 "[::1]:9997", "app.localhost:1"):
        assert (await stack.http.get("/v1/models", headers={"Host": host})).status_code == 200, host


async def test_a_server_bound_elsewhere_does_not_check_host():
    async with running_stack(settings=ServerSettings(host="0.0.0.0")) as s:
        assert (await s.http.get("/v1/models", headers={"Host": "gpu-box.lan:9997"})).status_code == 200


# ---- Origin and CORS -----------------------------------------------------------------

async def test_a_foreign_page_cannot_post_to_ollama_routes(stack):
    body = json.dumps({"model": "gemma-3"})
    for path in ("/api/pull", "/api/chat"):
        r = await stack.http.post(path, content=body, headers={"Origin": EVIL, "Content-Type": "text/plain"})
        assert r.status_code == 403 and "evil.example" in r.json()["error"], r.text
        assert "access-control-allow-origin" not in r.headers
        # even with no Origin (an old browser), a text/plain body never reaches the route
        r = await stack.http.post(path, content=body, headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and "application/json" in r.json()["error"]
        r = await stack.http.post(path, json={"model": "gemma-3"}, headers={"Origin": "null"})
        assert r.status_code == 403
    assert await _nothing_launched(stack)


async def test_preflight_is_answered_for_loopback_origins_only(stack):
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    for origin in ("http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]"):
        r = await stack.http.options("/v1/chat/completions", headers={"Origin": origin, **ask})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin, origin
    r = await stack.http.options("/v1/chat/completions", headers={"Origin": EVIL, **ask})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


async def test_the_servers_own_pages_may_post(stack):
    # the web UI: its Origin is the server itself, whatever name it was reached by
    r = await stack.http.post("/v1/chat/completions", json=CHAT, headers={"Origin": "http://127.0.0.1"})
    assert r.status_code == 404  # past the guards: the model does not exist
    async with running_stack(settings=ServerSettings(host="0.0.0.0")) as s:
        for origin, host in (("http://gpu-box.lan:9997", "gpu-box.lan:9997"),
                             ("https://llm.example", "llm.example"),
                             ("https://llm.example", "llm.example:443")):
            r = await s.http.get("/v1/models", headers={"Origin": origin, "Host": host})
            assert r.status_code == 200, (origin, host)
        r = await s.http.get("/v1/models", headers={"Origin": "http://gpu-box.lan:8000",
                                                     "Host": "gpu-box.lan:9997"})
        assert r.status_code == 403


async def test_allowed_origins_let_named_pages_and_their_proxy_in():
    settings = ServerSettings(allowed_origins=("https://chat.example/",))
    async with running_stack(settings=settings) as s:
        headers = {"Origin": "https://chat.example", "Host": "127.0.0.1:9997"}
        r = await s.http.get("/v1/models", headers=headers)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://chat.example"
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        # a reverse proxy on this machine that passes the public name on as Host
        assert (await s.http.get("/v1/models", headers={"Host": "chat.example"})).status_code == 200
        assert (await s.http.get("/v1/models", headers={"Origin": EVIL})).status_code == 403
    async with running_stack(settings=ServerSettings(allowed_origins=("*",))) as s:
        r = await s.http.get("/v1/models", headers={"Origin": EVIL})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"


# ---- bodies --------------------------------------------------------------------------

async def test_json_routes_take_json_only(stack):
    body = json.dumps({**CHAT, "stream": False})
    r = await stack.http.post("/v1/chat/completions", content=body, headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error"
    assert "text/plain" in r.json()["detail"]
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Content-Type": kind} if kind else {}
        r = await stack.http.post("/v1/models", content=b'{"model_name": "gemma-3"}', headers=headers)
        assert r.status_code == 415, kind
    assert await _nothing_launched(stack)
    for kind in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = await stack.http.post("/v1/chat/completions", content=body, headers={"Content-Type": kind})
        assert r.status_code == 404, kind  # past the guard
    # no body, no content type: fine (POST /v1/models/{uid}/cancel, DELETE /api/delete's checks)
    assert (await stack.http.post("/v1/models/x/cancel")).status_code == 404
    # login is an OAuth2 form by its specification
    r = await stack.http.post("/token", data={"username": "a", "password": "b"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "auth_disabled"
    r = await stack.http.post("/token", content=b"username=a", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_mounted_apps_keep_their_own_bodies(stack):
    async def echo(scope, receive, send):
        body = (await receive())["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    stack.app.mount("/ui", echo)
    r = await stack.http.post("/ui/gradio_api/upload", content=b"a=1",
                              headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 200 and r.content == b"a=1"


async def test_bodies_over_the_limit_are_413_before_and_while_streaming(stack, monkeypatch):
    monkeypatch.setattr(middleware, "MAX_BODY_BYTES", 1000)
    async with running_stack() as small:
        big = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]})
        r = await small.http.post("/v1/chat/completions", content=big,
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]

        async def chunks(text: str):
            for i in range(0, len(text), 100):
                yield text[i:i + 100].encode()

        for path, shape in (("/v1/chat/completions", "detail"), ("/api/chat", "error")):
            r = await small.http.post(path, content=chunks(big), headers={"Content-Type": "application/json"})
            assert "content-length" not in r.request.headers
            assert r.status_code == 413 and "XINFERENCE_MAX_BODY_BYTES" in r.json()[shape], path
        r = await small.http.post("/v1/chat/completions", content=chunks(json.dumps(CHAT)),
                                  headers={"Content-Type": "application/json"})
        assert r.status_code == 404  # a small chunked body gets through


# ---- request ids and errors ----------------------------------------------------------

async def test_request_ids_are_echoed_generated_or_replaced(stack):
    r = await stack.http.get("/v1/models", headers={"X-Request-Id": "trace-1.2:3_x"})
    assert r.headers["x-request-id"] == "trace-1.2:3_x"
    made = (await stack.http.get("/v1/models")).headers["x-request-id"]
    assert len(made) == 32 and made != (await stack.http.get("/v1/models")).headers["x-request-id"]
    for bad in ("a b", "x" * 129, "evil\u00e9", "a;b"):
        r = await stack.http.get("/v1/models", headers={"X-Request-Id": bad.encode("utf-8")})
        assert r.headers["x-request-id"] not in (bad, "") and len(r.headers["x-request-id"]) == 32
    # refusals carry one too
    r = await stack.http.get("/v1/models", headers={"Host": "evil.example", "X-Request-Id": "r1"})
    assert r.status_code == 403 and r.headers["x-request-id"] == "r1"


async def test_an_unexpected_error_is_a_generic_500_naming_the_request(stack, monkeypatch, caplog):
    async def broken():
        raise RuntimeError("/home/secret/path leaked")

    stack.app.add_api_route("/v1/broken", broken)
    stack.app.add_api_route("/api/broken", broken)
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.ERROR, logger="xinference.api"):
        r = await stack.http.get("/v1/broken", headers={"X-Request-Id": "req-42"})
        assert r.status_code == 500 and r.headers["x-request-id"] == "req-42"
        assert r.json()["detail"] == "Internal server error (request id req-42); see the server log."
        assert r.json()["error"]["type"] == "server_error"
        r = await stack.http.get("/api/broken", headers={"X-Request-Id": "req-43"})
        assert r.status_code == 500 and r.json() == {
            "error": "Internal server error (request id req-43); see the server log."}
    assert "secret" not in r.text
    logged = [x for x in caplog.records if x.exc_info and "secret" in str(x.exc_info[1])]
    assert [x.request_id for x in logged] == ["req-42", "req-43"]
    assert all("req-4" in x.getMessage() for x in logged)


async def test_a_stream_failing_mid_way_ends_with_an_error_frame(stack, monkeypatch):
    await stack.supervisor.launch_model({"model_name": "gemma-3", "model_uid": "m"})

    async def failing(self):
        yield self.first
        raise KeyError("/home/secret")

    monkeypatch.setattr(Generation, "deltas", failing)
    r = await stack.http.post("/v1/chat/completions", json={**CHAT, "stream": True},
                              headers={"X-Request-Id": "s-1"})
    frames = [json.loads(x[len("data: "):]) for x in r.text.split("\n\n") if x]
    assert frames[-1]["error"]["message"] == "Internal server error (request id s-1); see the server log."
    assert frames[-2]["choices"][0]["delta"]["content"] == "m-0:None" and "secret" not in r.text
    r = await stack.http.post("/api/chat", json=CHAT, headers={"X-Request-Id": "s-2"})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert lines[0]["message"]["content"] == "m-0:None"
    assert lines[-1] == {"error": "Internal server error (request id s-2); see the server log."}


# ---- methods -------------------------------------------------------------------------

async def test_a_known_path_with_the_wrong_method_is_405(stack):
    for method, path, allow in (("POST", "/api/ps", "GET"), ("POST", "/api/tags", "GET"),
                                ("DELETE", "/api/version", "GET"), ("GET", "/api/chat", "POST"),
                                ("POST", "/api/delete", "DELETE")):
        r = await stack.http.request(method, path)
        assert r.status_code == 405 and r.headers["allow"] == allow, (method, path)
        assert set(r.json()) == {"error"}
    for path in ("/api/copy", "/api/create", "/api/push", "/api/blobs/sha256:00"):
        r = await stack.http.post(path, json={})
        assert r.status_code == 501 and "/api/pull" in r.json()["error"], path
    assert (await stack.http.head("/api/blobs/sha256:00")).status_code == 501
    assert (await stack.http.post("/api/nothing", json={})).status_code == 404


# ---- the rules themselves ------------------------------------------------------------

def test_host_and_origin_rules():
    assert split_host("[::1]:8080") == ("::1", 8080) and split_host("Host.Example.") == ("host.example", None)
    assert is_loopback("127.9.9.9") and is_loopback("[::1]") and not is_loopback("127.0.0.1.evil.example")
    assert normal_origin("HTTPS://Chat.Example:443/") == "https://chat.example"
    assert normal_origin("http://[::1]:80") == "http://[::1]"
    local = OriginPolicy("localhost", ())
    assert local.checks_host and not local.host_allowed("0.0.0.0:9997")
    assert local.origin_allowed("http://127.0.0.1:9997", "localhost:9997")  # loopback origin
    assert not local.origin_allowed("http://127.0.0.1.evil.example", "127.0.0.1:9997")
    wide = OriginPolicy("0.0.0.0", ())
    assert wide.host_allowed("anything") and wide.origin_allowed("http://box", "box:80")
    assert not wide.origin_allowed("http://box:81", "box") and not wide.origin_allowed("null", "box")
