"""The attacks of issue 17, against a real server on 127.0.0.1: each is refused with a
clear 4xx, nothing is started, and the cluster serves the same afterwards."""

import http.client
from urllib.parse import urlparse

import psutil
import requests

from tests.conftest import GEMMA_UID

CHAT = {"model": GEMMA_UID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": 0}


def _refused(r, status, param=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["detail"] == body["error"]["message"]
    assert "Traceback" not in r.text and "/xinference/" not in r.text
    if param:
        assert body["error"]["param"] == param
    return body["error"]["message"]


def _raw(api, method, path, headers, body=b""):
    """A request exactly as a browser or a rebinding page would send it."""
    url = urlparse(api)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_attacks_are_refused_and_the_cluster_keeps_serving(api, local):
    processes = len(psutil.Process(local.pid).children(recursive=True))

    # code execution through the launch: LD_PRELOAD, remote code, absurd replica counts, bad options
    launch = {"model_name": "gemma-3", "model_uid": "evil", "n_ctx": 256}
    msg = _refused(requests.post(api + "/v1/models", json={**launch, "envs": {"LD_PRELOAD": "/tmp/evil.so"}}),
                   400, "envs")
    assert "LD_PRELOAD" in msg
    _refused(requests.post(api + "/v1/models", json={**launch, "envs": {"PYTHONPATH": "/tmp"}}), 400, "envs")
    msg = _refused(requests.post(api + "/v1/models", json={**launch, "trust_remote_code": True}), 400)
    assert "--trust-remote-code" in msg
    _refused(requests.post(api + "/v1/models", json={**launch, "replica": 400}), 400, "replica")
    _refused(requests.post(api + "/v1/models", json={**launch, "n_ctx": "abc"}), 400)
    _refused(requests.post(api + "/v1/models", json={**launch, "n_ctx": 10**9}), 400)
    assert requests.get(api + "/v1/models/evil").status_code == 404
    assert len(psutil.Process(local.pid).children(recursive=True)) == processes, "no process was started"

    # oversized and hostile request fields
    _refused(requests.post(api + "/v1/embeddings", json={"model": GEMMA_UID, "input": ["x"] * 200_000}), 400)
    _refused(requests.post(api + "/v1/chat/completions", json={**CHAT, "chat_template_kwargs": {"messages": 1}}),
             400)
    _refused(requests.post(api + "/v1/chat/completions", json={**CHAT, "stop": ["x" * 10_000]}), 400)
    too_big = b'{"model": "x", "prompt": "' + b"a" * (40 << 20) + b'"}'
    status, _ = _raw(api, "POST", "/v1/completions", {"Content-Type": "application/json"}, too_big)
    assert status == 413

    # the browser: DNS rebinding (a foreign Host) and plain cross-site POSTs
    status, body = _raw(api, "GET", "/v1/models", {"Host": "evil.example:9997"})
    assert status == 403 and b"DNS rebinding" in body
    pull = b'{"model": "gemma-3", "stream": false}'
    status, _ = _raw(api, "POST", "/api/pull", {"Content-Type": "text/plain", "Origin": "http://evil.example"}, pull)
    assert status == 403
    status, _ = _raw(api, "POST", "/api/chat", {"Content-Type": "text/plain"}, b'{"model": "gemma"}')
    assert status == 415
    pre = requests.options(api + "/v1/chat/completions", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in {k.lower() for k in pre.headers}

    # ... and everything still works
    r = requests.post(api + "/v1/chat/completions", json=CHAT, timeout=60)
    assert r.status_code == 200 and r.headers["X-Request-Id"]
    assert requests.get(api + f"/v1/models/{GEMMA_UID}").json()["status"] == "READY"
    assert len(psutil.Process(local.pid).children(recursive=True)) == processes
