"""`AsyncClient` against the real local cluster (and its stream handling against a fake
transport, where a test needs a server misbehaving on purpose)."""

import asyncio
import json

import httpx
import pytest

from tests.conftest import GEMMA_UID
from xinference.client import AsyncChatModelHandle, AsyncClient, Client
from xinference.client.common import APIError

ASK = [{"role": "user", "content": "Name a color."}]
CONFIG = {"max_tokens": 8, "temperature": 0}


def _text(chunks):
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.timeout(120)
async def test_models_chat_generate_and_errors(api):
    async with AsyncClient(api) as client:
        assert GEMMA_UID in await client.list_models()
        desc = await client.describe_model(GEMMA_UID)
        assert desc["model_engine"] == "llama.cpp" and "chat" in desc["model_ability"]

        model = await client.get_model(GEMMA_UID)
        assert isinstance(model, AsyncChatModelHandle)
        out = await model.chat(ASK, generate_config=CONFIG)
        assert out["choices"][0]["message"]["content"]
        chunks = [c async for c in await model.chat(ASK, generate_config={**CONFIG, "stream": True})]
        assert _text(chunks) == out["choices"][0]["message"]["content"]
        gen = await model.generate("Once upon a time", generate_config={"max_tokens": 4})
        assert gen["usage"]["completion_tokens"] <= 4 and isinstance(gen["choices"][0]["text"], str)

        with pytest.raises(APIError) as err:
            await client.describe_model("nope")
        with Client(api) as sync_client, pytest.raises(APIError) as sync_err:
            sync_client.describe_model("nope")
        assert err.value.status_code == sync_err.value.status_code == 404
        assert str(err.value) == str(sync_err.value) == f"Failed to get the model description, detail: {err.value.detail}"
        # a refused stream: the error body is read before the response is closed
        with pytest.raises(APIError) as err:
            await model.chat(ASK, generate_config={"stream": True, "temperature": 7})
        assert err.value.status_code == 400 and "temperature" in err.value.detail


@pytest.mark.timeout(120)
async def test_the_older_prompt_forms(api):
    history = [{"role": "user", "content": "My name is Ada."}, {"role": "assistant", "content": "Hello Ada."}]
    question = {"role": "user", "content": "What is my name?"}
    system = {"role": "system", "content": "Answer briefly."}
    config = {"max_tokens": 1, "temperature": 0}
    async with AsyncClient(api) as client:
        model = await client.get_model(GEMMA_UID)

        async def prompt_tokens(*args, **kwargs):
            return (await model.chat(*args, **kwargs))["usage"]["prompt_tokens"]

        want = await prompt_tokens([*history, question], generate_config=config)
        assert await prompt_tokens("What is my name?", history, config) == want
        assert await prompt_tokens(prompt="What is my name?", chat_history=history, system_prompt=system["content"],
                                   generate_config=config) == await prompt_tokens([system, *history, question],
                                                                                  generate_config=config)
        with pytest.raises(ValueError):
            await model.chat(chat_history=history)


@pytest.mark.timeout(120)
async def test_breaking_out_of_a_stream_ends_the_request(api):
    config = {"max_tokens": 1000, "ignore_eos": True, "temperature": 0, "stream": True}
    async with AsyncClient(api) as client:
        model = await client.get_model(GEMMA_UID)

        async def inflight():
            rows = await client.get_model_replicas(GEMMA_UID)
            return sum(r["inflight"] + r.get("slots_busy", 0) for r in rows)

        async for _ in await model.chat([{"role": "user", "content": "Count to one thousand."}],
                                        generate_config=config):
            assert await inflight() > 0
            break
        # 1000 tokens take far longer than this on the test machine: only a closed
        # connection ends the request in time.
        for _ in range(50):
            if await inflight() == 0:
                break
            await asyncio.sleep(0.1)
        assert await inflight() == 0


@pytest.mark.timeout(120)
async def test_concurrent_chats(api):
    async with AsyncClient(api) as client:
        model = await client.get_model(GEMMA_UID)
        questions = ["Name a color.", "Name a fruit.", "Name an animal."]
        outs = await asyncio.gather(*(
            model.chat([{"role": "user", "content": q}], generate_config={"max_tokens": 3, "temperature": 0})
            for q in questions))
        assert all(o["usage"]["completion_tokens"] <= 3 and o["choices"][0]["message"] for o in outs)


class _Body(httpx.AsyncByteStream):
    def __init__(self, *events):
        self.events, self.closed = events, False

    async def __aiter__(self):
        for event in self.events:
            yield f"data: {json.dumps(event) if isinstance(event, dict) else event}\n\n".encode()

    async def aclose(self):
        self.closed = True


def _fake(body):
    async def handler(request):
        assert request.headers["Authorization"] == "Bearer t0k"
        if request.url.path == "/v1/models/m":
            return httpx.Response(200, json={"model_type": "LLM", "model_ability": ["chat"]})
        return httpx.Response(200, stream=body, headers={"Content-Type": "text/event-stream"})

    client = AsyncClient("http://fake", api_key="t0k")
    client._http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return client


@pytest.mark.timeout(10)
async def test_a_stream_closes_its_response_however_it_ends():
    chunk = {"choices": [{"delta": {"content": "a"}}]}
    body = _Body(chunk, {"error": {"message": "the engine died"}}, "[DONE]")
    async with _fake(body) as client:
        stream = await (await client.get_model("m")).chat(ASK, generate_config={"stream": True})
        assert await stream.__anext__() == chunk and not body.closed
        with pytest.raises(RuntimeError, match="the engine died"):
            await stream.__anext__()
        assert body.closed

    body = _Body(chunk, chunk, "[DONE]")
    async with _fake(body) as client:
        stream = await (await client.get_model("m")).chat(ASK, generate_config={"stream": True})
        assert await stream.__anext__() == chunk
        await stream.aclose()
        assert body.closed

    body = _Body(chunk, chunk, "[DONE]")
    async with _fake(body) as client:
        async for _ in await (await client.get_model("m")).chat(ASK, generate_config={"stream": True}):
            break
        for _ in range(10):  # the event loop closes a dropped async generator on its next turns
            await asyncio.sleep(0)
        assert body.closed

    body = _Body(chunk, "[DONE]")
    async with _fake(body) as client:
        stream = await (await client.get_model("m")).chat(ASK, generate_config={"stream": True})
        del stream  # never read
        for _ in range(10):
            await asyncio.sleep(0)
        assert body.closed


@pytest.mark.timeout(120)
async def test_n_choices_and_logprobs_through_the_async_handle(api):
    async with AsyncClient(api) as client:
        model = await client.get_model(GEMMA_UID)
        out = await model.chat(ASK, generate_config={**CONFIG, "n": 2, "logprobs": True, "top_logprobs": 1})
        assert [c["index"] for c in out["choices"]] == [0, 1]
        assert all(c["logprobs"]["content"] for c in out["choices"])
        chunks = [c async for c in await model.chat(ASK, generate_config={**CONFIG, "n": 2, "stream": True})]
        indexes = {ch["index"] for c in chunks for ch in c["choices"]}
        assert indexes == {0, 1}
        gen = await model.generate(["Once upon a time", "Far away"], generate_config={"max_tokens": 3, "n": 2})
        assert [c["index"] for c in gen["choices"]] == [0, 1, 2, 3]
