"""A real cluster under --auth-config: the clients users have (xinference-client with a
key and with login, the openai SDK, the ollama library, our CLI) and the web UI's login."""

import json
import os
import subprocess

import pytest
import requests

from tests.servers import BIN, free_port, start, start_local, wait_http, wait_until

openai = pytest.importorskip("openai")
ollama = pytest.importorskip("ollama")
xc = pytest.importorskip("xinference_client")

UID = "gemma-sec"
ADMIN, READER, LISTER, TINY = "sk-admin-0000001", "sk-reader-000001", "sk-lister-000001", "sk-tiny-00000001"
CONFIG = {
    "auth_config": {"algorithm": "HS256", "secret_key": "c2VjcmV0LWZvci10ZXN0cy1vbmx5LTEyMzQ1Njc4OTA=",
                    "token_expire_in_minutes": 30},
    "user_config": [
        {"username": "admin", "password": "admin-pw", "permissions": ["admin"], "api_keys": [ADMIN]},
        {"username": "reader", "password": "reader-pw", "permissions": ["models:list", "models:read"],
         "api_keys": [READER, {"key": TINY, "tokens_per_day": 40}]},
        {"username": "lister", "password": "lister-pw", "permissions": ["models:list"], "api_keys": [LISTER]},
    ],
}
MSG = [{"role": "user", "content": "Say hi."}]


def _h(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure")
    path = folder / "auth.json"
    path.write_text(json.dumps(CONFIG))
    # bound to every address: the REST API only, never the actor pools (checked below)
    daemon = start_local(str(folder), None, "--auth-config", str(path), "-H", "0.0.0.0", ui=True)
    try:
        r = requests.post(daemon.endpoint + "/v1/models", headers=_h(ADMIN), timeout=180,
                          json={"model_name": "gemma-3", "model_uid": UID, "n_ctx": 512})
        assert r.status_code == 200, r.text
        yield daemon
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]


def test_only_the_rest_port_listens_beyond_loopback(secure):
    import psutil

    port = int(secure.endpoint.rsplit(":", 1)[1])
    tree = [psutil.Process(secure.pid), *psutil.Process(secure.pid).children(recursive=True)]
    assert len(tree) >= 2, "the model runs in its own process"
    listening = [c.laddr for p in tree for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    exposed = [a for a in listening if not a.ip.startswith("127.") and a.ip != "::1"]
    assert [a.port for a in exposed] == [port], listening


def test_xinference_client_with_key_and_login(secure):
    anonymous = xc.RESTfulClient(secure.endpoint)
    with pytest.raises(RuntimeError, match="Authentication required"):
        anonymous.list_models()
    client = xc.RESTfulClient(secure.endpoint, api_key=READER)
    assert UID in client.list_models()
    out = client.get_model(UID).chat(messages=MSG, generate_config={"max_tokens": 3, "temperature": 0})
    assert out["choices"][0]["message"]["content"]
    with pytest.raises(RuntimeError, match="models:start"):
        client.launch_model(model_name="gemma-3", model_uid="nope")
    logged = xc.RESTfulClient(secure.endpoint)
    logged.login("admin", "admin-pw")
    assert UID in logged.list_models()
    with pytest.raises(RuntimeError, match="Incorrect username or password"):
        xc.RESTfulClient(secure.endpoint).login("admin", "wrong")


def test_openai_sdk_and_ollama_library_with_keys(secure):
    good = openai.OpenAI(base_url=secure.endpoint + "/v1", api_key=READER)
    answer = good.chat.completions.create(model=UID, messages=MSG, max_tokens=3, temperature=0)
    assert answer.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=secure.endpoint + "/v1", api_key="sk-wrong-key-123").models.list()
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=secure.endpoint + "/v1", api_key=LISTER).chat.completions.create(
            model=UID, messages=MSG, max_tokens=3)

    with ollama.Client(host=secure.endpoint, headers=_h(READER), timeout=60) as client:
        reply = client.chat(model=UID, messages=MSG, options={"num_predict": 3, "temperature": 0})
        assert reply.message.content
    with ollama.Client(host=secure.endpoint, timeout=60) as client:
        with pytest.raises(ollama.ResponseError) as err:
            client.chat(model=UID, messages=MSG)
        assert err.value.status_code == 401


def test_cli_with_api_key_option_and_env(secure):
    xi = os.path.join(BIN, "xinference")
    env = {k: v for k, v in os.environ.items() if k != "XINFERENCE_API_KEY"}
    out = subprocess.run([xi, "list", "-e", secure.endpoint, "--api-key", LISTER], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 0 and UID in out.stdout, out.stderr
    out = subprocess.run([xi, "list", "-e", secure.endpoint], capture_output=True, text=True, timeout=60,
                         env={**env, "XINFERENCE_API_KEY": LISTER})
    assert out.returncode == 0 and UID in out.stdout, out.stderr
    out = subprocess.run([xi, "list", "-e", secure.endpoint], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and "Authentication required" in out.stderr
    out = subprocess.run([xi, "terminate", "--model-uid", UID, "-e", secure.endpoint, "--api-key", LISTER],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 1 and "models:stop" in out.stderr
    assert requests.get(secure.endpoint + f"/v1/models/{UID}", headers=_h(LISTER)).status_code == 200


def test_web_ui_login(secure):
    page = requests.get(secure.endpoint + "/ui/", timeout=30)
    assert page.status_code == 200
    assert requests.post(secure.endpoint + "/ui/login", data={"username": "admin", "password": "bad"},
                         timeout=30).status_code == 400
    session = requests.Session()
    r = session.post(secure.endpoint + "/ui/login", data={"username": "reader", "password": "reader-pw"}, timeout=30)
    assert r.status_code == 200, r.text
    assert any("access-token" in c.name for c in session.cookies)


def test_worker_joins_an_authenticated_supervisor_with_a_key(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(CONFIG))
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    sup = start(["xinference-supervisor", "-H", "127.0.0.1", "-p", str(port), "--auth-config", str(path),
                 "--no-ui"], str(tmp_path), "supervisor")
    workers = []
    try:
        wait_http(sup, endpoint + "/status")
        env = {k: v for k, v in os.environ.items() if k != "XINFERENCE_API_KEY"}
        refused = subprocess.run([os.path.join(BIN, "xinference-worker"), "-e", endpoint, "-H", "127.0.0.1"],
                                 capture_output=True, text=True, timeout=60, env=env)
        assert refused.returncode != 0 and "--api-key" in refused.stderr
        assert requests.get(endpoint + "/v1/address").status_code == 401
        assert requests.get(endpoint + "/v1/address", headers=_h(READER)).status_code == 403
        workers.append(start(["xinference-worker", "-e", endpoint, "-H", "127.0.0.1", "--api-key", ADMIN],
                             str(tmp_path), "worker"))
        wait_until(lambda: len(requests.get(endpoint + "/v1/workers", headers=_h(ADMIN)).json()) == 1, 30,
                   what="the worker registered")
    finally:
        for w in workers:
            w.stop()
        sup.stop()


def test_bad_auth_config_stops_the_daemon_with_a_readable_message(tmp_path):
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auth_config": {"secret_key": "short"}, "user_config": []}))
    out = subprocess.run([os.path.join(BIN, "xinference-local"), "--auth-config", str(path), "-p", str(free_port())],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "invalid at auth_config.secret_key" in out.stderr, out.stderr


def test_tokens_per_day_quota_and_usage(secure):
    body = {"model": UID, "messages": MSG, "max_tokens": 30, "temperature": 0, "ignore_eos": True}
    r = requests.post(secure.endpoint + "/v1/chat/completions", json=body, headers=_h(TINY), timeout=60)
    assert r.status_code == 200, r.text
    used = r.json()["usage"]["total_tokens"]
    assert used >= 40
    r = requests.post(secure.endpoint + "/v1/chat/completions", json=body, headers=_h(TINY), timeout=60)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded", r.text
    assert 0 < int(r.headers["Retry-After"]) <= 86400
    # streamed usage is counted as well, for another key
    with requests.post(secure.endpoint + "/v1/chat/completions", json={**body, "stream": True}, headers=_h(READER),
                       timeout=60, stream=True) as s:
        assert s.status_code == 200
        frames = [line for line in s.iter_lines() if line.startswith(b"data:")]
    assert frames[-1] == b"data: [DONE]"
    assert requests.get(secure.endpoint + "/v1/auth/usage", headers=_h(READER)).status_code == 403
    rows = requests.get(secure.endpoint + "/v1/auth/usage", headers=_h(ADMIN)).json()["data"]
    tiny = next(row for row in rows if row["key"].startswith(TINY[:6]) and row["tokens_per_day_limit"] == 40)
    assert tiny["requests"] == 1 and tiny["total_tokens"] == used and tiny["tokens_today"] == used
    reader = [row for row in rows if row["username"] == "reader" and row["tokens_per_day_limit"] is None]
    assert sum(row["completion_tokens"] for row in reader) >= 30



def _usage_of(endpoint, key_label):
    rows = requests.get(endpoint + "/v1/auth/usage", headers=_h(ADMIN)).json()["data"]
    return next(row for row in rows if row["key"] == key_label)


def test_a_stream_cut_by_its_client_still_counts_its_tokens(secure):
    """Closing a stream early must not make its tokens free."""
    body = {"model": UID, "messages": MSG, "max_tokens": 400, "temperature": 0, "ignore_eos": True, "stream": True}
    label = READER[:6] + "…" + READER[-2:]
    requests.get(secure.endpoint + "/v1/models", headers=_h(READER))
    with requests.post(secure.endpoint + "/v1/chat/completions", json=body, headers=_h(READER), timeout=60,
                       stream=True) as s:
        assert s.status_code == 200
        before = _usage_of(secure.endpoint, label)
        seen = 0
        for line in s.iter_lines():
            if line.startswith(b"data:") and b"content" in line:
                seen += 1
                if seen == 5:
                    break

    def counted():
        row = _usage_of(secure.endpoint, label)
        return row if row["prompt_tokens"] > before["prompt_tokens"] else None

    row = wait_until(counted, 15, what="the cut stream counted")
    assert row["completion_tokens"] - before["completion_tokens"] >= 4


def test_our_client_and_metrics_under_auth(secure):
    from prometheus_client.parser import text_string_to_metric_families

    from xinference.client import Client

    with Client(secure.endpoint, api_key=READER) as client:
        assert UID in client.list_models()
    with Client(secure.endpoint) as client:
        client.login("reader", "reader-pw")
        assert UID in client.list_models()
        with pytest.raises(RuntimeError, match="Incorrect username or password"):
            client.login("reader", "nope")
    assert requests.get(secure.endpoint + "/metrics").status_code == 401
    assert requests.get(secure.endpoint + "/metrics", headers=_h(READER)).status_code == 403
    r = requests.get(secure.endpoint + "/metrics", headers=_h(ADMIN))
    assert r.status_code == 200
    names = {f.name for f in text_string_to_metric_families(r.text)}
    assert "xinference_requests" in names and "xinference_slots_total" in names
