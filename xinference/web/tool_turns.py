"""The chat tab's conversation when a model calls tools, apart from Gradio and HTTP.

`Conversation` keeps the messages in the OpenAI shape, as the server is sent them: the
user's messages, the assistant's answers (an answer that calls tools carries `tool_calls`,
their arguments as JSON text, ids as the server gave them), then one `tool` message per
call with the user's result. The functions around it read the tools box, the tool-choice
selector and the results box, and write calls, invalid calls and results as chat bubbles.
"""

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

Message = Dict[str, Any]
Call = Dict[str, Any]  # {"id", "type": "function", "function": {"name", "arguments"}}
Translate = Callable[..., str]

EXAMPLE_TOOLS = ({"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}},)
EXAMPLE_TEXT = json.dumps(EXAMPLE_TOOLS, indent=2)

CHOICES = ("auto", "required", "none")
FUNCTION = "function:"  # the selector's value for one named function: "function:get_weather"


# ---- the tools box and the tool-choice selector ------------------------------


def parse_tools(text: Optional[str], t: Translate) -> Optional[List[Dict[str, Any]]]:
    """The tools box as a list of OpenAI tool definitions; None when it is empty. A bare
    function definition ({"name", "parameters"}) is wrapped as a tool. ValueError: a
    sentence that says what is wrong."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(t("tools.bad_json", detail=str(e))) from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise ValueError(t("tools.not_a_list"))
    tools = []
    for i, tool in enumerate(value, 1):
        if "function" not in tool and "name" in tool:
            tool = {"type": "function", "function": tool}
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise ValueError(t("tools.no_name", number=i))
        tools.append(tool)
    return tools or None


def function_names(tools: Optional[List[Dict[str, Any]]]) -> List[str]:
    return [tool["function"]["name"] for tool in tools or []]


def tools_hint(text: Optional[str], t: Translate) -> str:
    """One line under the tools box: what it declares, or what is wrong with it."""
    try:
        names = function_names(parse_tools(text, t))
    except ValueError as e:
        return t("status.error", message=str(e))
    return t("tools.declared", count=len(names), names=", ".join(names)) if names else ""


def choice_options(tools: Optional[List[Dict[str, Any]]]) -> List[Tuple[str, str]]:
    """The selector's (label, value) pairs: auto, required, none, then each function."""
    return [(c, c) for c in CHOICES] + [(f"{name}()", FUNCTION + name) for name in function_names(tools)]


def tool_choice(value: Optional[str], tools: Optional[List[Dict[str, Any]]]) -> Any:
    """The request's `tool_choice` for the selector's value; None (not sent) without tools
    or for "auto", which is the server's default when there are tools."""
    if not tools or not value or value == "auto":
        return None
    if value.startswith(FUNCTION):
        return {"type": "function", "function": {"name": value[len(FUNCTION):]}}
    return value


# ---- the conversation --------------------------------------------------------


def _call(call: Call) -> Call:
    fn = call.get("function") or {}
    return {"id": str(call.get("id") or ""), "type": "function",
            "function": {"name": str(fn.get("name") or ""), "arguments": str(fn.get("arguments") or "")}}


@dataclass
class Conversation:
    """The chat tab's messages as the server gets them (no system prompt: that comes from
    its own field at each request), and the last answer's calls still waiting for results."""

    messages: List[Message] = field(default_factory=list)
    pending: List[Call] = field(default_factory=list)

    def copy(self) -> "Conversation":
        return copy.deepcopy(self)

    def ask(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})

    def answer(self, text: str, calls: Optional[List[Call]] = None) -> None:
        """The assistant's answer; its calls then wait for results."""
        calls = [_call(c) for c in calls or []]
        message: Message = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        self.messages.append(message)
        self.pending = calls

    def give_results(self, results: Dict[str, str]) -> None:
        """One `tool` message per waiting call, in the calls' order."""
        for call in self.pending:
            self.messages.append({"role": "tool", "tool_call_id": call["id"], "content": results[call["id"]]})
        self.pending = []

    def request(self, system_prompt: str = "") -> List[Message]:
        """The messages to send, after the system prompt when there is one."""
        system = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
        return system + copy.deepcopy(self.messages)


# ---- the results box ---------------------------------------------------------


def results_template(pending: List[Call]) -> str:
    """What the results box starts with: empty for one call (the whole text is its result),
    else a JSON object with an empty result for each call id."""
    if len(pending) <= 1:
        return ""
    return json.dumps({c["id"]: "" for c in pending}, indent=2, ensure_ascii=False)


def results_label(pending: List[Call], t: Translate) -> str:
    if len(pending) == 1:
        return t("tools.result_of", name=pending[0]["function"]["name"], id=pending[0]["id"])
    return t("tools.results_json", count=len(pending))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_results(text: Optional[str], pending: List[Call], t: Translate) -> Dict[str, str]:
    """{call id: result} from the results box. For one call the whole text is its result
    (unless it is a JSON object keyed by that call); for several, a JSON object that maps
    each call id (or a function's name, when only one call has it) to its result; a result
    that is not a string is sent as JSON. ValueError: a sentence that says what is wrong."""
    text = text or ""
    obj: Any = None
    if text.strip().startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as e:
            if len(pending) > 1:
                raise ValueError(t("tools.results_bad_json", detail=str(e))) from None
    names = [c["function"]["name"] for c in pending]
    ids = {c["id"]: c["id"] for c in pending}
    ids.update({name: c["id"] for name, c in zip(names, pending) if names.count(name) == 1 and name not in ids})
    if len(pending) == 1 and not (isinstance(obj, dict) and obj and set(obj) <= set(ids)):
        obj = {pending[0]["id"]: text}
    if not isinstance(obj, dict):
        raise ValueError(t("tools.results_need_json"))
    out: Dict[str, str] = {}
    for key, value in obj.items():
        if key not in ids:
            raise ValueError(t("tools.results_unknown", name=key))
        out[ids[key]] = _as_text(value)
    missing = [c for c in pending if not out.get(c["id"], "").strip()]
    if missing:
        calls = ", ".join(f"{c['function']['name']} ({c['id']})" for c in missing)
        raise ValueError(t("tools.results_missing", calls=calls))
    return out


# ---- chat bubbles ------------------------------------------------------------


def fenced(text: str, lang: str = "") -> str:
    """`text` as a Markdown code block whose fence no run of backticks inside can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def pretty_arguments(arguments: str) -> str:
    """A call's arguments indented for reading; as they came when they are not JSON."""
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def call_bubble(call: Call, t: Translate) -> Message:
    """A call as a Chatbot message of its own: a titled box with the pretty arguments."""
    fn = call["function"]
    return {"role": "assistant", "metadata": {"title": t("tools.call_title", name=fn["name"], id=call["id"])},
            "content": fenced(pretty_arguments(fn["arguments"]), "json")}


def invalid_bubble(bad: Dict[str, Any], t: Translate) -> Message:
    """A call the server found invalid: one warning line (its text stays in the answer)."""
    return {"role": "assistant", "content": t("tools.invalid", name=bad.get("name") or "?",
                                              error=str(bad.get("error") or "").strip().rstrip("."))}


def result_bubble(call: Call, result: str, t: Translate) -> Message:
    title = t("tools.result_title", name=call["function"]["name"], id=call["id"])
    return {"role": "user", "content": f"{title}\n\n{fenced(result)}"}
