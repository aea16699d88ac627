"""The chat tab's tool calling against the real server: its handlers, as the page calls
them, with the tiny random model carrying Qwen2.5's template (tests/conftest.py), whose
calls only tool_choice "required" or a named function makes (see test_tool_calls.py)."""

import json

import pytest
import requests

from tests.conftest import GEMMA_UID
from xinference.web import chat_tab
from xinference.web.launch_options import can_call_tools
from xinference.web.launch_tab import fetch_models
from xinference.web.page import Page
from xinference.web.tool_turns import Conversation

pytest.importorskip("llama_cpp")
# gr.Warning outside a page is a UserWarning: the status lines are checked instead
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")

UID = "tiny-web-tools"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}
TOOLS_TEXT = json.dumps([WEATHER])
SKIP = {"__type__": "update"}


@pytest.fixture(scope="module")
def tools_model(local, tiny_qwen_template_gguf):
    r = requests.post(f"{local.endpoint}/v1/models", json={
        "model_name": "qwen2.5-instruct", "model_uid": UID, "model_format": "ggufv2",
        "model_engine": "llama.cpp", "model_path": tiny_qwen_template_gguf, "n_ctx": 4096}, timeout=300)
    assert r.status_code == 200, r.text
    yield UID
    requests.delete(f"{local.endpoint}/v1/models/{UID}", timeout=60)


@pytest.fixture
def page(local, tools_model):
    page = Page(local.endpoint)
    page.models = fetch_models(page)  # as the page keeps them: {uid: description}
    return page


def _send(page, message, history, conversation, model=UID, choice="required", max_tokens=120):
    return list(chat_tab._reply(page, message, history, conversation, model, page.models, "", max_tokens, 0,
                                TOOLS_TEXT, choice, "en"))


def test_the_page_knows_which_models_call_tools(page):
    assert can_call_tools(page.models, UID) and not can_call_tools(page.models, GEMMA_UID)


def test_a_forced_call_is_shown_and_answering_it_continues_the_conversation(page):
    box, history, conversation, group, results, status = _send(page, "Weather in Paris?", [], Conversation())[-1]
    assert box == SKIP and not status.startswith("⚠"), status
    calls = conversation.pending
    assert calls and all(c["function"]["name"] == "get_weather" and c["id"] for c in calls)
    assert "wait for your results" in status
    shown = [m for m in history if m.get("metadata")]
    assert [m["metadata"]["title"] for m in shown] == [f"🔧 Tool call: get_weather · {c['id']}" for c in calls]
    for bubble, call in zip(shown, calls):
        assert bubble["content"].startswith("```json\n{\n") and json.loads(call["function"]["arguments"])["city"]
    assert group["visible"] is True
    assert conversation.messages[-1] == {"role": "assistant", "content": None, "tool_calls": calls}

    # the user answers each call (the box is prefilled for several), then the model goes on
    if len(calls) == 1:
        answer = "21 degrees, sunny"
    else:
        template = json.loads(results["value"])
        answer = json.dumps({call_id: f"{i} degrees" for i, call_id in enumerate(template)})
    outputs = list(chat_tab._answer_calls(page, answer, history, conversation, UID, page.models, "", 4, 0,
                                          TOOLS_TEXT, "en"))
    _, history, final, _, _, status = outputs[-1]
    assert not status.startswith("⚠"), status
    assert "tokens/s" in status and final.pending == []  # after the results the model chose prose (auto)
    roles = [m["role"] for m in final.messages]
    assert roles == ["user", "assistant"] + ["tool"] * len(calls) + ["assistant"]
    assert [m["tool_call_id"] for m in final.messages[2:-1]] == [c["id"] for c in calls]
    assert history[-1]["role"] == "assistant" and history[-1]["content"]
    assert sum(m["content"].startswith("📎 Result of **get_weather**") for m in history if m["role"] == "user") \
        == len(calls)


def test_the_servers_refusal_is_shown_as_the_chat_tab_shows_errors(page):
    *_, status = _send(page, "Weather?", [], Conversation(), choice="function:get_time")[-1]
    assert status.startswith("⚠ The server refused the request:") and "tool_choice" in status


def test_a_model_without_tools_chats_as_before(page):
    _, history, conversation, _, _, status = _send(page, "Hi", [], Conversation(), model=GEMMA_UID,
                                                   max_tokens=4)[-1]
    assert "tokens/s" in status and conversation.pending == []
    assert [m["role"] for m in history] == ["user", "assistant"]
