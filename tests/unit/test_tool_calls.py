"""Reading tool calls out of streamed output, per format; the history each family's own
template renders; the grammar that forces calls."""

import json

import pytest

from xinference.model.llm.chat_template import render_chat
from xinference.model.llm.family import builtin_families, tool_format_of_template
from xinference.model.llm.tools.calls import ToolCallReader
from xinference.model.llm.tools.formats import FORMATS
from xinference.types import ToolUse

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}
USE = ToolUse(tools=[WEATHER, TIME])


def _read(fmt_name, text, step=1):
    """Feeds `text` in pieces of `step` characters; returns prose, calls and invalid."""
    reader = ToolCallReader(FORMATS[fmt_name], USE)
    prose, calls, invalid = [], [], []
    pieces = [text[i:i + step] for i in range(0, len(text), step)] or [""]
    for i, piece in enumerate(pieces):
        p, c, b = (reader.finish if i == len(pieces) - 1 else reader.feed)(piece)
        prose.append(p)
        calls += c
        invalid += b
    return "".join(prose), calls, invalid


@pytest.mark.parametrize("step", [1, 3, 1000])
@pytest.mark.parametrize("fmt,text", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
               '<tool_call>\n{"name": "get_time", "arguments": {"tz": "CET"}}\n</tool_call>'),
    ("mistral", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
                '{"name": "get_time", "arguments": {"tz": "CET"}}]'),
])
def test_parallel_calls_are_read_whatever_the_pieces(fmt, text, step):
    prose, calls, invalid = _read(fmt, text, step)
    assert prose == "" and invalid == []
    assert [(c["index"], c["name"], json.loads(c["arguments"])) for c in calls] == [
        (0, "get_weather", {"city": "Paris"}), (1, "get_time", {"tz": "CET"})]
    assert len({c["id"] for c in calls}) == 2


@pytest.mark.parametrize("step", [1, 1000])
@pytest.mark.parametrize("fmt,text", [
    ("llama3_json", '{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("llama3_json", '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}'),
    ("glm4", 'get_weather\n{"city": "Paris"}'),
    ("hermes", '  <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'),
])
def test_a_single_call_is_read(fmt, text, step):
    prose, calls, invalid = _read(fmt, text, step)
    assert (prose, invalid) == ("", [])
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("fmt,text", [
    ("hermes", "The weather is <b>fine</b> < today {\"a\": 1}"),
    ("llama3_json", "Sure: {\"name\": \"get_weather\"} is what I would call"),
    ("glm4", "\nget_weathers are nice\n{}"),
    ("glm4", "get"),
    ("mistral", "No [TOOLS] here"),
])
def test_prose_passes_through_unchanged(fmt, text):
    for step in (1, 2, 1000):
        assert _read(fmt, text, step) == (text, [], [])


def test_prose_before_a_call_streams_and_the_call_follows():
    text = 'Let me look.\n<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'
    reader = ToolCallReader(FORMATS["hermes"], USE)
    first = reader.feed(text[:20])
    assert first[0] == "Let me look.\n" and first[1] == []  # "<tool_" held back
    rest = reader.finish(text[20:])
    assert rest[0] == "" and rest[1][0]["name"] == "get_time"


@pytest.mark.parametrize("body,error", [
    ('{"name": "get_weather", "arguments": {"city": 7}}', "do not match its schema at city"),
    ('{"name": "get_weather", "arguments": {"town": "Oslo"}}', "do not match its schema"),
    ('{"name": "launch_missiles", "arguments": {}}', "not a declared tool"),
    ('{"name": "get_weather", "arguments": "Paris"}', "not a JSON object"),
    ('{"name": "get_weather", "arguments": {"city": "Par', "not a well-formed tool call"),
])
def test_a_wrong_call_is_reported_and_its_text_kept(body, error):
    text = f"<tool_call>\n{body}\n</tool_call>"
    prose, calls, invalid = _read("hermes", text, 1000)
    assert calls == [] and len(invalid) == 1 and error in invalid[0]["error"]
    assert prose == text  # the client sees what the model wrote


def test_an_unclosed_call_at_the_end_is_still_read():
    prose, calls, _ = _read("hermes", '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}')
    assert prose == "" and calls[0]["name"] == "get_time"


def test_mistral_ids_are_what_its_template_accepts():
    _, calls, _ = _read("mistral", '[TOOL_CALLS] [{"name": "get_time", "arguments": {"tz": "UTC"}}]')
    assert len(calls[0]["id"]) == 9 and calls[0]["id"].isalnum()
    _, calls, _ = _read("hermes", '<tool_call>{"name": "get_time", "arguments": {"tz": "UTC"}}</tool_call>')
    assert calls[0]["id"].startswith("call_")


HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "abcDEF123", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "abcDEF123", "content": "21 C, sunny"},
]


@pytest.mark.parametrize("family,call,result", [
    ("qwen2.5-instruct", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "<tool_response>\n21 C, sunny\n</tool_response>"),
    ("qwen3", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "<tool_response>\n21 C, sunny\n</tool_response>"),
    ("llama-3.1-instruct", '{"name": "get_weather", "parameters": {"city": "Paris"}}',
     # Meta's template writes a string result as JSON
     '<|start_header_id|>ipython<|end_header_id|>\n\n"21 C, sunny"'),
    ("llama-3.2-instruct", '{"name": "get_weather", "parameters": {"city": "Paris"}}',
     '<|start_header_id|>ipython<|end_header_id|>\n\n"21 C, sunny"'),
    ("mistral-instruct-v0.3", '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]',
     '[TOOL_RESULTS] {"content": 21 C, sunny, "call_id": "abcDEF123"}[/TOOL_RESULTS]'),
    ("glm4-chat", '<|assistant|>get_weather\n{"city": "Paris"}', "<|observation|>\n21 C, sunny"),
])
def test_each_tool_family_renders_tools_calls_and_results(family, call, result):
    fam = builtin_families()[family]
    assert "tools" in fam.model_ability and fam.tool_call_format in FORMATS
    fmt = FORMATS[fam.tool_call_format]
    messages, variables = fmt.prepare([dict(m) for m in HISTORY], [WEATHER])
    prompt = render_chat(fam.chat_template, messages, bos_token=fam.bos_token, eos_token="</s>",
                         variables=variables)
    assert call in prompt and result in prompt
    assert "get_weather" in prompt.split(call)[0]  # the tool's declaration comes first
    assert "Weather in a city" in prompt
    # a family's template is what its format was inferred from for custom models
    assert tool_format_of_template(fam.chat_template) == fam.tool_call_format


def test_families_without_the_ability_have_no_format():
    fams = builtin_families()
    assert fams["gemma-3"].tool_call_format is None and "tools" not in fams["gemma-3"].model_ability


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_formats_forced_grammar_is_one_llguidance_accepts(fmt):
    llguidance = pytest.importorskip("llguidance")
    from xinference.model.llm.engines.guidance import tool_lark

    for choice, parallel in (("required", True), ("get_time", False)):
        grammar = FORMATS[fmt].grammar([WEATHER, TIME], choice, parallel)
        lark = tool_lark(grammar, lambda text: 5 if text == "[TOOL_CALLS]" else None)
        assert llguidance.LLMatcher.validate_grammar(llguidance.LLMatcher.grammar_from_lark(lark)) == ""
        assert ("get_weather" in lark) == (choice == "required")
        # Mistral's marker is asked for as its special token
        assert ("<[5]>" in lark) == (fmt == "mistral")


def test_ollama_writes_calls_with_object_arguments_and_says_stop():
    from xinference.api.protocol.ollama import done_reply

    call = {"index": 0, "id": "call_x", "name": "get_time", "arguments": '{"tz": "UTC"}'}
    body = done_reply("chat", "m", "", "tool_calls", None, [call])
    assert body["message"]["tool_calls"] == [{"function": {"index": 0, "name": "get_time",
                                                           "arguments": {"tz": "UTC"}}}]
    assert body["done_reason"] == "stop" and body["done"] is True
