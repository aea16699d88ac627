"""Tool calling through the real server with the real `openai` SDK and LangChain.

The model is the tiny random Llama carrying Qwen2.5's chat template, launched as the
tool-capable qwen2.5-instruct family on llama.cpp: it never writes a call by itself, so
every call seen here was forced by the grammar made from the tools' schemas, and must
still be a valid call of a declared tool, whatever the sampling."""

import json

import jsonschema
import pytest
import requests

from tests.tool_defs import ASK, SCHEMAS, TOOLS, WEATHER

pytest.importorskip("llama_cpp")
openai = pytest.importorskip("openai")

UID = "tiny-tools"


@pytest.fixture(scope="module")
def tools_model(local, tiny_qwen_template_gguf):
    r = requests.post(f"{local.endpoint}/v1/models", json={
        "model_name": "qwen2.5-instruct", "model_uid": UID, "model_format": "ggufv2",
        "model_engine": "llama.cpp", "model_path": tiny_qwen_template_gguf, "n_ctx": 4096,
        "n_parallel": 4}, timeout=300)
    assert r.status_code == 200, r.text
    yield UID
    requests.delete(f"{local.endpoint}/v1/models/{UID}", timeout=60)


@pytest.fixture
def client(api):
    return openai.OpenAI(base_url=f"{api}/v1", api_key="none", max_retries=0)


def _valid(call):
    assert call.type == "function" and call.id
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, SCHEMAS[call.function.name])
    return call.function.name, args


@pytest.mark.parametrize("seed", range(4))
def test_required_always_gives_valid_calls_of_declared_tools(client, tools_model, seed):
    # two choices each time: each is held to the grammar on its own
    r = client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, tool_choice="required",
                                       temperature=1.0, seed=2 * seed, max_tokens=200, n=2)
    assert [c.index for c in r.choices] == [0, 1]
    for choice in r.choices:
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None and choice.message.tool_calls
        names = [_valid(c)[0] for c in choice.message.tool_calls]
        assert set(names) <= {"get_weather", "get_time"}
        assert len({c.id for c in choice.message.tool_calls}) == len(names)


def test_a_named_function_is_the_one_called_once_without_parallel_calls(client, tools_model):
    for seed in range(3):
        r = client.chat.completions.create(
            model=UID, messages=ASK, tools=TOOLS, temperature=1.0, seed=seed, max_tokens=200,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            parallel_tool_calls=False)
        calls = r.choices[0].message.tool_calls
        assert len(calls) == 1 and _valid(calls[0])[0] == "get_time"


def test_a_streamed_call_comes_as_openai_streams_one_and_matches_the_whole(client, tools_model):
    args = dict(model=UID, messages=ASK, tools=TOOLS, tool_choice="required", temperature=0,
                max_tokens=200, parallel_tool_calls=False)
    whole = client.chat.completions.create(**args).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(stream=True, **args))
    parts = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert parts[0].id and parts[0].function.name == whole.function.name  # name first
    assert all(p.index == 0 for p in parts) and all(p.id is None for p in parts[1:])
    assert "".join(p.function.arguments or "" for p in parts) == whole.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    # the SDK's own stream helper puts the call back together
    with client.chat.completions.stream(**args) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == whole.function.arguments


def test_auto_leaves_the_choice_to_the_model_and_none_renders_no_tools(client, tools_model):
    r = client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, temperature=0,
                                       max_tokens=8)
    # the random model writes prose: no call is made up
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "length"
    with_tools = r.usage.prompt_tokens
    r = client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, tool_choice="none",
                                       temperature=0, max_tokens=8)
    assert r.choices[0].message.tool_calls is None and r.usage.prompt_tokens < with_tools


def test_a_conversation_carries_calls_and_results_back(client, tools_model):
    first = client.chat.completions.create(model=UID, messages=ASK, tools=TOOLS, tool_choice="required",
                                           temperature=0, max_tokens=200, parallel_tool_calls=False)
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "21 degrees, sunny"}]
    r = client.chat.completions.create(model=UID, messages=history, tools=TOOLS, temperature=0,
                                       max_tokens=4)
    assert r.usage.prompt_tokens > first.usage.prompt_tokens + 10  # the call and result rendered


@pytest.mark.parametrize("body,param", [
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0.function.name"),
    ({"tools": [WEATHER, WEATHER]}, "tools"),
    ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
    ({"functions": [WEATHER["function"]]}, "functions"),
])
def test_bad_tool_requests_are_400s_that_name_the_field(api, tools_model, body, param):
    r = requests.post(f"{api}/v1/chat/completions", json={"model": UID, "messages": ASK, **body}, timeout=60)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and r.json()["detail"]


def test_a_model_without_the_tools_ability_refuses_tools(api):
    r = requests.post(f"{api}/v1/chat/completions", timeout=60, json={
        "model": "gemma", "messages": ASK, "tools": TOOLS})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"
    assert "cannot call tools" in r.json()["error"]["message"]


def test_langchain_bind_tools_gets_the_calls(api, tools_model):
    lc = pytest.importorskip("langchain_openai")
    llm = lc.ChatOpenAI(base_url=f"{api}/v1", api_key="none", model=UID, temperature=0,
                        max_tokens=200, max_retries=0)
    msg = llm.bind_tools(TOOLS, tool_choice="get_weather").invoke("Weather in Oslo?")
    assert len(msg.tool_calls) >= 1 and msg.tool_calls[0]["name"] == "get_weather"
    jsonschema.validate(msg.tool_calls[0]["args"], SCHEMAS["get_weather"])
    assert not msg.invalid_tool_calls


def test_ollama_chat_takes_tools_and_a_history_of_calls(api, tools_model):
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=api)
    assert "tools" in (client.show(UID).capabilities or [])
    opts = {"num_predict": 4, "temperature": 0}
    base = client.chat(model=UID, messages=ASK, tools=TOOLS, options=opts)
    assert not base.message.tool_calls  # the random model writes prose
    history = ASK + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
        {"role": "tool", "content": "21 degrees"}]
    r = client.chat(model=UID, messages=history, tools=TOOLS, options=opts)
    assert r.prompt_eval_count > base.prompt_eval_count + 10  # the call and its result rendered


def test_the_chat_command_shows_a_call_and_takes_its_result(api, tools_model, tmp_path):
    import os
    import subprocess
    import sys

    xinference = os.path.join(os.path.dirname(sys.executable), "xinference")
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    out = subprocess.run(
        [xinference, "chat", "-e", api, "-u", UID, "--tools", str(tools),
         "--tool-choice", "get_time", "--max-tokens", "120", "--temperature", "0"],
        input="What time is it?\n14:00 UTC\nexit\n", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "-> tool call get_time({" in out.stdout
    assert "Result of get_time:" in out.stdout
    # after the result the model answered (prose from the random model), then the prompt came back
    assert out.stdout.count("Assistant:") == 2
    bad = subprocess.run([xinference, "chat", "-e", api, "-u", UID,
                          "--tool-choice", "required"], input="", capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--tools" in bad.stderr
