"""`xinference launch -lm NAME PATH`, `xinference list` and xinference-client against
the REST app served by uvicorn on this test's loop (so the in-process supervisor's
refs stay on their loop); the blocking CLI and client run in a thread."""

import asyncio
import socket
from contextlib import asynccontextmanager, nullcontext

import pytest
import uvicorn
from click.testing import CliRunner

from tests.unit.fake_cluster import lora_config, running_stack
from xinference.deploy.cli import cli

pytestmark = pytest.mark.timeout(60)


class _Server(uvicorn.Server):
    def capture_signals(self):  # type: ignore[override]
        return nullcontext()  # leave pytest's signal handlers alone


@asynccontextmanager
async def _serve(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                    lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def served():
    async with running_stack() as stack:
        async with _serve(stack.app) as url:
            yield stack, url


async def _xinference(*args):
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), catch_exceptions=False)


async def test_launch_with_lora_modules_and_list(served):
    stack, url = served
    out = await _xinference("launch", "-n", "gemma-3", "-u", "m", "-e", url,
                            "-lm", "sql", "/loras/sql", "--lora-modules", "chat", "/loras/chat")
    assert out.exit_code == 0, out.output
    assert "Model uid: m" in out.output
    plan = (await stack.worker.launched())["m-0"]
    assert plan["engine"] == "Transformers" and plan["engine_kwargs"] == {}
    assert plan["lora_list"] == lora_config("sql", "chat")["lora_list"]

    out = await _xinference("list", "-e", url)
    assert out.exit_code == 0, out.output
    header, _, *rows = out.output.splitlines()
    assert header.split()[:3] == ["UID", "Type", "Name"]
    assert [r.split()[0] for r in rows] == ["m", "sql", "chat"]
    assert rows[0].split()[1:4] == ["LLM", "gemma-3", "Transformers"]
    assert rows[1].split()[1:5] == ["LoRA", "adapter", "of", "m"] and "READY" in rows[1]

    out = await _xinference("terminate", "-u", "sql", "-e", url)
    assert out.exit_code == 1
    assert "sql is a LoRA adapter of model m" in out.output


async def test_launch_without_lora_modules_sends_no_adapters(served):
    stack, url = served
    out = await _xinference("launch", "-n", "gemma-3", "-u", "m", "-e", url)
    assert out.exit_code == 0, out.output
    plan = (await stack.worker.launched())["m-0"]
    assert plan["engine"] == "llama.cpp" and plan["lora_list"] == []


async def test_lora_modules_needs_a_name_and_a_path(served):
    _, url = served
    out = await _xinference("launch", "-n", "gemma-3", "-e", url, "-lm", "sql")
    assert out.exit_code == 2 and "requires 2 arguments" in out.output


async def test_xinference_client_launches_lists_and_chats_with_an_adapter(served):
    xc = pytest.importorskip("xinference_client")
    stack, url = served

    def use_client():
        client = xc.RESTfulClient(url)
        uid = client.launch_model(model_name="gemma-3", model_uid="m",
                                  peft_model_config=lora_config("sql", image_keys=True))
        listed = client.list_models()
        model = client.get_model("sql")
        reply = model.chat(messages=[{"role": "user", "content": "hi"}])
        base_reply = client.get_model("m").chat(
            messages=[{"role": "user", "content": "hi"}], generate_config={"lora_name": "sql"})
        return uid, listed, reply, base_reply

    uid, listed, reply, base_reply = await asyncio.to_thread(use_client)
    assert uid == "m"
    assert list(listed) == ["m", "sql"] and listed["sql"]["parent"] == "m"
    assert reply["choices"][0]["message"]["content"] == "m-0:sql"
    assert base_reply["choices"][0]["message"]["content"] == "m-0:sql"
