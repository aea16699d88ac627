"""The web UI's tool calling without a browser: streamed calls put back together, the
tools box and the selector, the conversation sent back (an assistant message carrying
`tool_calls`, then one `tool` message per call), the results box, the chat bubbles, and
the chat tab's handlers against a fake client."""

import itertools
import json
import re
from types import SimpleNamespace

import pytest

from xinference.client import ChatModelHandle
from xinference.client.common import APIError
from xinference.web import chat_tab
from xinference.web.i18n import Translator
from xinference.web.launch_options import can_call_tools
from xinference.web.replies import stream_turn
from xinference.web.streams import ToolCallCollector
from xinference.web.tool_panel import tools_changed
from xinference.web.tool_turns import (
    EXAMPLE_TEXT,
    Conversation,
    call_bubble,
    choice_options,
    fenced,
    invalid_bubble,
    parse_results,
    parse_tools,
    result_bubble,
    results_label,
    results_template,
    tool_choice,
    tools_hint,
)

T, ZH = Translator("en"), Translator("zh-CN")
# gr.Warning outside a page is a UserWarning: the handlers' status lines are checked instead
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gradio.helpers")

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
CALL_A = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CALL_B = {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}


def _call_chunks(index, call_id, name, arguments):
    """A call as the server streams it: id and name with empty arguments, then the arguments."""
    head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    tail = {"index": index, "function": {"arguments": arguments}}
    return [{"choices": [{"index": 0, "delta": {"tool_calls": [head]}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {"tool_calls": [tail]}, "finish_reason": None}]}]


def _text(text, finish=None, **choice):
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish, **choice}]}


END_CALLS = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
USAGE = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}


# ---- streamed calls ----------------------------------------------------------


def test_collector_puts_streamed_calls_back_together_in_index_order():
    chunks = [_text("")] + _call_chunks(1, "call_b", "get_time", "{}") \
        + _call_chunks(0, "call_a", "get_weather", '{"city": ') + [
            {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}]},
            END_CALLS, USAGE]
    collector = ToolCallCollector()
    assert list(collector.watch(chunks)) == chunks  # the chunks pass on unchanged
    assert collector.calls == [CALL_A, CALL_B]
    assert collector.invalid == []


def test_collector_keeps_the_invalid_calls():
    bad = {"name": "get_wether", "arguments": "{}", "error": "no tool is named 'get_wether'"}
    collector = ToolCallCollector()
    collector.add(_text("<tool_call>...", "stop", invalid_tool_calls=[bad]))
    collector.add({"choices": [{"text": "a completion chunk"}]})
    assert collector.calls == [] and collector.invalid == [bad]


# ---- the tools box and the selector ------------------------------------------


def test_parse_tools_reads_a_list_a_tool_or_a_bare_function():
    assert parse_tools("", T) is None and parse_tools("  \n", T) is None and parse_tools("[]", T) is None
    assert parse_tools(json.dumps([WEATHER, CLOCK]), T) == [WEATHER, CLOCK]
    assert parse_tools(json.dumps(WEATHER), T) == [WEATHER]
    assert parse_tools(json.dumps(WEATHER["function"]), T) == [WEATHER]
    assert parse_tools(EXAMPLE_TEXT, T)[0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize("text,expected", [
    ('[{"type": "function", ', "The tools are not valid JSON: Expecting"),
    ('"get_weather"', "must be a JSON list of tool definitions"),
    ("[1, 2]", "must be a JSON list of tool definitions"),
    ('[{"type": "function", "function": {"name": "a"}}, {"type": "function"}]', "Tool 2 has no function name"),
])
def test_parse_tools_says_what_is_wrong(text, expected):
    with pytest.raises(ValueError, match=expected):
        parse_tools(text, T)
    assert tools_hint(text, T).startswith("⚠ ")


def test_tools_hint_and_the_selector_follow_the_box():
    text = json.dumps([WEATHER, CLOCK])
    assert tools_hint(text, T) == "✓ 2 tool(s): get_weather, get_time"
    assert tools_hint(text, ZH) == "✓ 2 个工具：get_weather, get_time"
    assert tools_hint("", T) == ""
    assert tools_hint("{", ZH).startswith("⚠ 工具不是有效的 JSON")
    assert choice_options(None) == [("auto", "auto"), ("required", "required"), ("none", "none")]
    assert choice_options([WEATHER])[3:] == [("get_weather()", "function:get_weather")]
    hint, update = tools_changed(text, "function:get_time", "en")
    assert hint.startswith("✓") and update["value"] == "function:get_time" and len(update["choices"]) == 5
    # a function no longer declared falls back to auto; while the JSON is broken the selector stays
    assert tools_changed(json.dumps([WEATHER]), "function:get_time", "en")[1]["value"] == "auto"
    hint, update = tools_changed("[{", "function:get_time", "en")
    assert hint.startswith("⚠") and update == {"__type__": "update"}


def test_tool_choice_values():
    assert tool_choice("auto", [WEATHER]) is None  # the server's default with tools: not sent
    assert tool_choice("required", [WEATHER]) == "required"
    assert tool_choice("none", [WEATHER]) == "none"
    assert tool_choice("function:get_weather", [WEATHER]) == {"type": "function", "function": {"name": "get_weather"}}
    assert tool_choice("required", None) is None  # without tools no choice is sent (it would be a 400)


def test_only_models_with_the_tools_ability_get_tools():
    models = {"q": {"model_ability": ["generate", "chat", "tools"]}, "g": {"model_ability": ["chat"]}}
    assert can_call_tools(models, "q")
    assert not can_call_tools(models, "g") and not can_call_tools(models, None) and not can_call_tools(None, "q")


# ---- the conversation sent back ----------------------------------------------


def test_conversation_carries_calls_and_results_as_the_openai_api_expects():
    conversation = Conversation()
    conversation.ask("Weather in Paris, and the time?")
    conversation.answer("", [CALL_A, CALL_B])
    assert conversation.pending == [CALL_A, CALL_B]
    conversation.give_results({"call_b": "14:00 UTC", "call_a": '{"temp": 21}'})
    conversation.answer("It is 21 degrees at 14:00.")
    assert conversation.pending == []
    assert conversation.request("Be brief.") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris, and the time?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL_A, CALL_B]},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "14:00 UTC"},
        {"role": "assistant", "content": "It is 21 degrees at 14:00."},
    ]
    # the arguments stay the server's JSON text, and the ids its ids
    args = conversation.messages[1]["tool_calls"][0]["function"]["arguments"]
    assert isinstance(args, str) and json.loads(args) == {"city": "Paris"}


def test_conversation_keeps_text_next_to_calls_and_copies_deeply():
    conversation = Conversation()
    conversation.ask("Hi")
    conversation.answer("Let me look.", [CALL_A])
    copy = conversation.copy()
    copy.give_results({"call_a": "sunny"})
    assert conversation.pending == [CALL_A] and len(conversation.messages) == 2
    assert conversation.messages[1] == {"role": "assistant", "content": "Let me look.", "tool_calls": [CALL_A]}
    assert conversation.request("  ")[0]["role"] == "user"  # a blank system prompt is left out
    conversation.request()[1]["tool_calls"].clear()
    assert conversation.messages[1]["tool_calls"] == [CALL_A]
    empty = Conversation()
    empty.answer("")
    assert empty.messages == [{"role": "assistant", "content": ""}]


# ---- the results box ---------------------------------------------------------


def test_one_call_takes_the_whole_text_as_its_result():
    assert results_template([CALL_A]) == ""
    assert results_label([CALL_A], T) == "Result of get_weather (call_a)"
    assert parse_results("21 degrees, sunny", [CALL_A], T) == {"call_a": "21 degrees, sunny"}
    # a JSON result stays the result, unless it is keyed by the call
    assert parse_results('{"temp": 21}', [CALL_A], T) == {"call_a": '{"temp": 21}'}
    assert parse_results('{"call_a": "sunny"}', [CALL_A], T) == {"call_a": "sunny"}
    assert parse_results('{"get_weather": {"temp": 21}}', [CALL_A], T) == {"call_a": '{"temp": 21}'}
    assert parse_results("{not json", [CALL_A], T) == {"call_a": "{not json"}


def test_several_calls_take_a_json_object_by_call_id_or_name():
    template = results_template([CALL_A, CALL_B])
    assert json.loads(template) == {"call_a": "", "call_b": ""}
    assert results_label([CALL_A, CALL_B], T) == "Results of 2 calls: a JSON object, call id → result"
    text = json.dumps({"call_a": {"temp": 21, "sky": "晴"}, "get_time": "14:00"}, ensure_ascii=False)
    assert parse_results(text, [CALL_A, CALL_B], T) == {"call_a": '{"temp": 21, "sky": "晴"}', "call_b": "14:00"}


def test_a_name_called_twice_is_no_key():
    twice = [CALL_A, {**CALL_A, "id": "call_c"}]
    with pytest.raises(ValueError, match="get_weather is not the id of a waiting call"):
        parse_results('{"get_weather": "x", "call_c": "y"}', twice, T)


@pytest.mark.parametrize("text,calls,expected", [
    ("", [CALL_A], "No result for get_weather (call_a)"),
    ("  ", [CALL_A], "No result for get_weather (call_a)"),
    ('{"call_a": "x", ', [CALL_A, CALL_B], "The results are not valid JSON"),
    ("sunny", [CALL_A, CALL_B], "Give the results as a JSON object"),
    ('{"call_a": "x"}', [CALL_A, CALL_B], "No result for get_time (call_b)"),
    ('{"call_a": "x", "call_b": ""}', [CALL_A, CALL_B], "No result for get_time (call_b)"),
    ('{"call_a": "x", "call_b": "y", "call_z": "z"}', [CALL_A, CALL_B], "call_z is not the id of a waiting call"),
])
def test_results_box_says_what_is_wrong(text, calls, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        parse_results(text, calls, T)


# ---- chat bubbles ------------------------------------------------------------


def test_a_call_shows_its_name_id_and_pretty_arguments():
    bubble = call_bubble(CALL_A, T)
    assert bubble["role"] == "assistant"
    assert bubble["metadata"]["title"] == "🔧 Tool call: get_weather · call_a"
    assert bubble["content"] == '```json\n{\n  "city": "Paris"\n}\n```'
    odd = {**CALL_A, "function": {"name": "f", "arguments": "not json ```"}}
    assert call_bubble(odd, ZH)["content"] == "````json\nnot json ```\n````"
    assert call_bubble(odd, ZH)["metadata"]["title"] == "🔧 工具调用：f · call_a"


def test_an_invalid_call_is_one_warning_line_and_a_result_its_own_bubble():
    bad = {"name": "get_wether", "arguments": "{}", "error": "no tool is named 'get_wether'."}
    assert invalid_bubble(bad, T) == {"role": "assistant",
                                      "content": "⚠ Not a valid tool call (get_wether): no tool is named 'get_wether'."}
    assert invalid_bubble({"error": "not JSON"}, ZH)["content"] == "⚠ 无效的工具调用（?）：not JSON。"
    assert result_bubble(CALL_A, "21 degrees", T) == {
        "role": "user", "content": "📎 Result of **get_weather** · `call_a`\n\n```\n21 degrees\n```"}
    assert fenced("") == "```\n\n```"


# ---- one turn against a fake client ------------------------------------------


class _Client:
    def __init__(self, handle=None, error=None):
        self.handle, self.error = handle, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def get_model(self, uid):
        if self.error is not None:
            raise self.error
        return self.handle


class _Handle(ChatModelHandle):
    """Answers each chat with the next list of chunks; records what it was sent."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def chat(self, messages, tools=None, generate_config=None):
        self.calls.append({"messages": messages, "tools": tools, "config": generate_config})
        yield from self.answers.pop(0)


def _turn(handle, conversation, history=None, tools=None, choice=None, client=None):
    ticks = itertools.count(0, 0.1)
    params = {"system_prompt": "", "max_tokens": 64, "temperature": 0}
    return list(stream_turn(lambda: client or _Client(handle), "http://h:1", conversation, history, "q", params,
                            "en", tools, choice, clock=lambda: next(ticks)))


CALLS_ANSWER = _call_chunks(0, "call_a", "get_weather", '{"city": "Paris"}') + [END_CALLS, USAGE]


def test_a_turn_with_a_call_then_its_result():
    handle = _Handle(CALLS_ANSWER, [_text("Sunny."), _text("", "stop"), USAGE])
    conversation = Conversation()
    conversation.ask("Weather?")
    history = [{"role": "user", "content": "Weather?"}]
    history, after, status, failed = _turn(handle, conversation, history, [WEATHER], "required")[-1]
    assert not failed and conversation.messages == [{"role": "user", "content": "Weather?"}]  # unchanged
    assert history == [{"role": "user", "content": "Weather?"}, call_bubble(CALL_A, T)]  # no empty text bubble
    assert after.pending == [CALL_A]
    assert "tokens/s" in status and status.endswith("1 tool call(s) wait for your results (below the conversation)")
    sent = handle.calls[0]
    assert sent["tools"] == [WEATHER] and sent["config"]["tool_choice"] == "required"
    assert sent["messages"] == [{"role": "user", "content": "Weather?"}]

    after.give_results({"call_a": "21 degrees"})
    history, final, status, failed = _turn(handle, after, history + [result_bubble(CALL_A, "21 degrees", T)],
                                           [WEATHER])[-1]
    assert not failed and history[-1] == {"role": "assistant", "content": "Sunny."}
    assert final.pending == [] and "wait" not in status
    sent = handle.calls[1]
    assert "tool_choice" not in sent["config"]
    assert sent["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL_A]},
        {"role": "tool", "tool_call_id": "call_a", "content": "21 degrees"},
    ]


def test_a_turn_with_an_invalid_call_keeps_its_text_and_warns():
    bad = {"name": "get_wether", "arguments": "{}", "error": "no tool is named 'get_wether'"}
    handle = _Handle([_text('<tool_call>{"name": "get_wether"}'), _text("", "stop", invalid_tool_calls=[bad])])
    conversation = Conversation()
    conversation.ask("Weather?")
    history, after, status, failed = _turn(handle, conversation, [], [WEATHER])[-1]
    assert not failed and after.pending == []
    assert history == [{"role": "assistant", "content": '<tool_call>{"name": "get_wether"}'}, invalid_bubble(bad, T)]
    assert after.messages[-1] == {"role": "assistant", "content": '<tool_call>{"name": "get_wether"}'}


def test_a_failed_turn_keeps_the_partial_answer_and_no_calls():
    def answer():
        yield _text("par")
        yield from _call_chunks(0, "call_a", "get_weather", "{}")
        raise RuntimeError("replica died")

    class Handle(_Handle):
        def chat(self, messages, tools=None, generate_config=None):
            return answer()

    history, after, status, failed = _turn(Handle(), Conversation(), [], [WEATHER])[-1]
    assert failed and status == "The answer stopped: replica died."
    assert history == [{"role": "assistant", "content": "par"}]
    assert after.messages == [{"role": "assistant", "content": "par"}] and after.pending == []
    refused = _Client(error=APIError("generate chat completion", 400, 'tool_choice: no tool is named "nope"'))
    history, after, status, failed = _turn(None, Conversation(), [], [WEATHER], client=refused)[-1]
    assert failed and history == [] and after.messages == []
    assert status == 'The server refused the request: tool_choice: no tool is named "nope".'


# ---- the chat tab's handlers -------------------------------------------------

TOOL_MODELS = {"q": {"model_type": "LLM", "model_ability": ["generate", "chat", "tools"]},
               "g": {"model_type": "LLM", "model_ability": ["generate", "chat"]}}


def _page(handle):
    return SimpleNamespace(client=lambda: _Client(handle), endpoint="http://h:1")


def _send(handle, message, conversation=None, model="q", tools_text="", choice="auto", history=None):
    return list(chat_tab._reply(_page(handle), message, history or [], conversation or Conversation(), model,
                                TOOL_MODELS, "", 64, 0, tools_text, choice, "en"))


def _answer(handle, text, conversation, history):
    return list(chat_tab._answer_calls(_page(handle), text, history, conversation, "q", TOOL_MODELS, "", 64, 0,
                                       json.dumps([WEATHER]), "en"))


def test_the_chat_tab_shows_a_call_and_sends_its_result_back():
    handle = _Handle(CALLS_ANSWER, [_text("Sunny."), USAGE])
    box, history, conversation, group, results, status = _send(handle, "Weather?", tools_text=json.dumps([WEATHER]),
                                                               choice="function:get_weather")[-1]
    assert box == {"__type__": "update"}
    assert history[-1]["metadata"]["title"] == "🔧 Tool call: get_weather · call_a"
    assert group == {"__type__": "update", "visible": True}
    assert results["label"] == "Result of get_weather (call_a)" and results["value"] == ""
    assert handle.calls[0]["config"]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    # a message while the call waits goes back into the box
    out = _send(handle, "Hello?", conversation, history=history)
    assert len(out) == 1 and out[0][0] == "Hello?" and out[0][5].startswith("⚠ The model's 1 tool call(s) wait")
    # results that do not fit say so and change nothing
    (_, _, kept, *_, status), = _answer(handle, "  ", conversation, history)
    assert kept == {"__type__": "update"} and status == "⚠ No result for get_weather (call_a)"

    outputs = _answer(handle, "21 degrees", conversation, history)
    _, shown, _, group, results, _ = outputs[0]
    assert shown[-1] == result_bubble(CALL_A, "21 degrees", T)
    assert group == {"__type__": "update", "visible": False} and results == {"__type__": "update", "value": ""}
    _, history, final, _, _, status = outputs[-1]
    assert history[-1] == {"role": "assistant", "content": "Sunny."} and "tokens/s" in status
    assert [m["role"] for m in handle.calls[1]["messages"]] == ["user", "assistant", "tool"]
    assert final.pending == [] and [m["role"] for m in final.messages] == ["user", "assistant", "tool", "assistant"]


def test_the_chat_tab_refuses_bad_tools_and_ignores_tools_of_a_model_without_them():
    handle = _Handle([_text("Hi."), USAGE])
    (box, history, *_, status), = _send(handle, "Hello", tools_text="[{")
    assert box == "Hello" and history == {"__type__": "update"}
    assert status.startswith("⚠ The tools are not valid JSON: Expecting")
    assert not handle.calls
    # the tools box of a model that cannot call tools is not sent, not even checked
    _, history, conversation, *_, status = _send(handle, "Hello", model="g", tools_text="[{", choice="required")[-1]
    assert handle.calls[0]["tools"] is None and "tool_choice" not in handle.calls[0]["config"]
    assert history[-1] == {"role": "assistant", "content": "Hi."} and conversation.pending == []
    (box, *_, status), = _send(handle, "Hello", model=None)
    assert box == "Hello" and status.startswith("⚠ Choose a running chat model")
    assert _send(handle, "   ") == []


def test_the_chat_tab_has_the_tool_components_hidden_until_needed():
    from xinference.web.app import build_ui

    config = build_ui("http://127.0.0.1:9").get_config_file()
    by_id = {c["props"].get("elem_id"): c["props"] for c in config["components"] if c["props"].get("elem_id")}
    assert by_id["chat-tools"]["visible"] is False  # shown for a model with the "tools" ability
    assert by_id["chat-tool-results"]["visible"] is False  # shown while calls wait for results
    assert by_id["chat-tools-json"]["placeholder"] == EXAMPLE_TEXT
    assert [c[1] for c in by_id["chat-tool-choice"]["choices"]] == ["auto", "required", "none"]
    assert "arena-tools" not in by_id  # the arena stays without tools
