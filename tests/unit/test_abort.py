"""POST /v1/models/{uid}/requests/{id}/abort over the fake cluster: streams end with an
error frame and their replica generation is closed, non-streamed requests answer 409
and their replica call is cancelled, ids are blocked for block_duration, and a client
that leaves mid-stream is counted as 499."""

import asyncio
import json
import time

import pytest

from tests.unit.fake_cluster import running_stack
from tests.unit.prom_text import scrape, value
from tests.unit.slow_replicas import swap_replica, wait_for
from xinference.api.inflight import MAX_BLOCKED, InFlightRequests

pytestmark = pytest.mark.timeout(60)

MSG = [{"role": "user", "content": "hi"}]
LONG = 2000  # deltas, 10 ms apart: 20 s unless aborted


@pytest.fixture
async def stack():
    async with running_stack() as s:
        await s.supervisor.launch_model({"model_name": "gemma-3", "model_uid": "m"})
        s.slow = await swap_replica(s.address, "m-0", delay=0.01)
        yield s


async def _counts(stack):
    return await stack.slow.counts()


async def _running(stack) -> bool:
    return (await _counts(stack))["active"] == 1


async def _idle(stack) -> bool:
    return (await _counts(stack))["active"] == 0


async def _abort(stack, rid: str, model: str = "m", **body):
    return await stack.http.post(f"/v1/models/{model}/requests/{rid}/abort", json=body or None)


async def test_abort_ends_a_stream_with_an_error_frame_and_frees_the_replica(stack):
    http = stack.http
    t0 = time.monotonic()
    stream = asyncio.create_task(http.post(
        "/v1/chat/completions", headers={"X-Request-Id": "r-1"},
        json={"model": "m", "messages": MSG, "stream": True, "max_tokens": LONG}))
    await wait_for(lambda: _running(stack))
    # another model's abort, or another id, leaves it alone
    await stack.supervisor.launch_model({"model_name": "gemma-3", "model_uid": "other"})
    assert (await _abort(stack, "r-1", model="other")).json() == {}
    assert (await _abort(stack, "r-2")).json() == {}
    await asyncio.sleep(0.1)
    assert not stream.done()

    r = await _abort(stack, "r-1", block_duration=0)
    assert r.status_code == 200 and r.json() == {}
    answer = await asyncio.wait_for(stream, 5)
    assert time.monotonic() - t0 < 10
    frames = [line[len("data: "):] for line in answer.text.splitlines() if line.startswith("data: ")]
    last = json.loads(frames[-1])
    assert last["error"]["code"] == "request_aborted" and "r-1" in last["error"]["message"]
    assert "[DONE]" not in frames and len(frames) > 2  # it had streamed some deltas first
    await wait_for(lambda: _idle(stack))
    counts = await _counts(stack)
    assert counts == {"active": 0, "started": 1, "finished": 0, "cut": 1}

    # the replica serves the next request; the aborted one counts as 409
    r = await http.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "max_tokens": 3})
    assert r.status_code == 200
    s = await scrape(http)
    assert value(s, "xinference_requests_total", model="m", endpoint="chat", status="409") == 1
    assert value(s, "xinference_requests_total", model="m", endpoint="chat", status="200") == 1
    assert value(s, "xinference_slots_busy", model="m", model_name="gemma-3") == 0


async def test_abort_by_body_request_id_cancels_a_non_streamed_call(stack):
    http = stack.http
    call = asyncio.create_task(http.post("/v1/completions", json={
        "model": "m", "prompt": "x", "max_tokens": LONG, "request_id": "body-id"}))
    await wait_for(lambda: _running(stack))
    assert (await _abort(stack, "body-id")).json() == {}
    r = await asyncio.wait_for(call, 5)
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "request_aborted"
    assert r.json()["error"]["type"] == "invalid_request_error"
    await wait_for(lambda: _idle(stack))
    assert (await _counts(stack))["cut"] == 1


async def test_the_header_id_wins_over_the_body_id(stack):
    call = asyncio.create_task(stack.http.post(
        "/v1/completions", headers={"X-Request-Id": "from-header"},
        json={"model": "m", "prompt": "x", "max_tokens": 100, "request_id": "from-body"}))
    await wait_for(lambda: _running(stack))
    await _abort(stack, "from-body", block_duration=0)
    await _abort(stack, "from-header", block_duration=0)
    assert (await asyncio.wait_for(call, 5)).status_code == 409


async def test_abort_ends_an_ollama_stream_with_an_error_line(stack):
    stream = asyncio.create_task(stack.http.post(
        "/api/chat", headers={"X-Request-Id": "o-1"},
        json={"model": "m", "messages": MSG, "options": {"num_predict": LONG}}))
    await wait_for(lambda: _running(stack))
    await _abort(stack, "o-1")
    answer = await asyncio.wait_for(stream, 5)
    lines = [json.loads(line) for line in answer.text.splitlines() if line]
    assert "error" in lines[-1] and "o-1" in lines[-1]["error"]
    assert not any(line.get("done") for line in lines)
    await wait_for(lambda: _idle(stack))


async def test_a_blocked_id_is_refused_before_it_reaches_a_replica(stack):
    http = stack.http
    assert (await _abort(stack, "early", block_duration=30)).json() == {}
    r = await http.post("/v1/chat/completions", headers={"X-Request-Id": "early"},
                        json={"model": "m", "messages": MSG, "stream": True})
    assert r.status_code == 409 and r.json()["error"]["code"] == "request_aborted"
    # block_duration 0 blocks nothing; the default (no body) is 30 s
    assert (await _abort(stack, "free", block_duration=0)).json() == {}
    r = await http.post("/v1/chat/completions", headers={"X-Request-Id": "free"},
                        json={"model": "m", "messages": MSG})
    assert r.status_code == 200
    assert (await http.post("/v1/models/m/requests/nobody/abort")).json() == {}
    r = await http.post("/v1/completions", json={"model": "m", "prompt": "x", "request_id": "nobody"})
    assert r.status_code == 409
    assert (await _counts(stack))["started"] == 1


async def test_abort_of_an_unknown_model_is_a_404(stack):
    r = await _abort(stack, "r", model="no-such-model")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = await stack.http.post("/v1/models/m/requests/r/abort", json={"block_duration": -1})
    assert r.status_code == 400


async def test_a_client_that_leaves_mid_stream_counts_as_499_and_stops_decoding(stack):
    """The raw ASGI conversation a server has with a client that disconnects after the
    first chunk (httpx's in-process transport cannot disconnect)."""
    body = json.dumps({"model": "m", "messages": MSG, "stream": True, "max_tokens": LONG}).encode()
    first_chunk = asyncio.Event()
    sent = []
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"",
             "root_path": "", "query_string": b"", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    await asyncio.wait_for(stack.app(scope, receive, send), 10)
    assert sent[0]["status"] == 200
    await wait_for(lambda: _idle(stack))
    assert (await _counts(stack))["cut"] == 1
    s = await scrape(stack.http)
    assert value(s, "xinference_requests_total", model="m", endpoint="chat", status="499") == 1


def test_blocked_ids_expire_and_are_bounded():
    now = [0.0]
    inflight = InFlightRequests(clock=lambda: now[0])
    assert inflight.abort("m", "a", block_s=10) == 0
    assert inflight.start("chat", "a", from_client=True).aborted
    now[0] = 11.0
    assert not inflight.start("chat", "a", from_client=True).aborted
    for i in range(MAX_BLOCKED + 5):
        inflight.abort("m", f"id-{i}", block_s=100)
    assert len(inflight._blocked) == MAX_BLOCKED
    assert not inflight.start("chat", "id-0", from_client=True).aborted  # the oldest went first
    assert inflight.start("chat", f"id-{MAX_BLOCKED + 4}", from_client=True).aborted


def test_finished_requests_leave_the_registry():
    inflight = InFlightRequests()
    req = inflight.start("chat", "x", from_client=False)
    assert req.use_id("y") and len(inflight) == 1
    assert inflight.abort("m", "x") == 0
    assert not req.use_id("z")  # the first client id sticks
    inflight.finish(req)
    assert len(inflight) == 0 and inflight.abort("m", "y") == 0


async def test_an_overlong_request_id_to_abort_is_a_400(stack):
    r = await stack.http.post(f"/v1/models/m/requests/{'x' * 129}/abort", json={"block_duration": 30})
    assert r.status_code == 400 and r.json()["error"]["param"] == "request_id", r.text
    r = await stack.http.post("/v1/models/m/requests/r1/abort", json={"block_duration": "soon"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "block_duration", r.text
