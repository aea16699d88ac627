"""How each tool-capable family writes tool calls, and reads them in the chat history.

A family names its format in `tool_call_format`. A format knows:
  - how a call opens and closes in the model's output (to tell calls from text while
    streaming), and how to read a call's name and arguments out of its body;
  - the grammar that makes an output nothing but well-formed calls (tool_choice
    "required" or a named function);
  - how the family's chat template wants the history's calls and results (the
    templates follow Hugging Face's convention: arguments as objects, not JSON text).

The call syntaxes are those the families' own templates teach the model:
  hermes       Qwen2.5, Qwen3: <tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>
  llama3_json  Llama 3.1/3.2: the whole answer is {"name": ..., "parameters": {...}}
  mistral      Mistral v0.3: [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]
  glm4         GLM-4: the answer's first line is the function's name, the rest its
               arguments as JSON
"""

import json
import secrets
import string
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ....errors import InvalidRequestError
from ....types import CallPattern, ToolGrammar

Call = Tuple[Any, Any]  # (name, arguments) as the model wrote them, unchecked
_ALNUM = string.ascii_letters + string.digits


def function_of(tool: Dict[str, Any]) -> Dict[str, Any]:
    return tool.get("function") or {}


def parameters_of(tool: Dict[str, Any]) -> Dict[str, Any]:
    """The tool's argument schema; a function without one takes an empty object."""
    params = function_of(tool).get("parameters")
    return params if isinstance(params, dict) and params else {"type": "object", "properties": {}}


def _json_values(text: str) -> List[Any]:
    """The JSON values written one after another in `text` (separated by whitespace or
    `;`); raises ValueError on anything else."""
    # strict=False: a raw newline inside a string (which grammars made by the schema
    # converter allow) is read; the arguments are written out again as strict JSON
    decoder = json.JSONDecoder(strict=False)
    values: List[Any] = []
    i = 0
    while True:
        while i < len(text) and (text[i].isspace() or text[i] == ";"):
            i += 1
        if i == len(text):
            return values
        value, i = decoder.raw_decode(text, i)
        values.append(value)


def _named(obj: Any, args_key: str) -> Call:
    if not isinstance(obj, dict) or "name" not in obj:
        raise ValueError('a call must be a JSON object with "name"')
    args = obj.get(args_key, obj.get("arguments", obj.get("parameters", {})))
    return obj["name"], args


class ToolFormat:
    name = ""
    # the text that opens a call block; "" for formats whose calls are the whole answer
    opener = ""
    # the text that closes a block; "" when a block runs to the end of the output
    closer = ""
    # special tokens the output must keep as text so calls can be told from prose
    special_markers: Tuple[str, ...] = ()
    # whether the template renders several calls in one assistant turn
    parallel = True

    # ---- reading the model's output --------------------------------------------------

    def find_call(self, text: str, at_start: bool, tool_names: Sequence[str]) -> Tuple[int, int]:
        """Where a call block opens in `text`: (start, body start); or (-1, n) when none
        does and the last n characters may be the beginning of one. `at_start`: no text
        but whitespace came before `text`."""
        i = text.find(self.opener)
        if i >= 0:
            return i, i + len(self.opener)
        return -1, _partial_suffix(text, self.opener)

    def find_close(self, body: str) -> Optional[Tuple[int, int]]:
        """Where the block's body ends and where the text after its closer starts; None
        while the closer has not come (a block without a closer runs to the end)."""
        if not self.closer:
            return None
        i = body.find(self.closer)
        return (i, i + len(self.closer)) if i >= 0 else None

    def parse(self, body: str, tool_names: Sequence[str]) -> List[Call]:
        raise NotImplementedError

    # ---- constraining it ---------------------------------------------------------------

    def call_pattern(self, name: str, schema: Dict[str, Any]) -> CallPattern:
        raise NotImplementedError

    def grammar(self, tools: List[Dict[str, Any]], choice: str, parallel: bool) -> ToolGrammar:
        """Output that is only calls of `tools` ("required") or of the one named."""
        chosen = [t for t in tools if choice == "required" or function_of(t).get("name") == choice]
        calls = [self.call_pattern(function_of(t)["name"], parameters_of(t)) for t in chosen]
        return self._wrap(calls, parallel and self.parallel)

    def _wrap(self, calls: List[CallPattern], parallel: bool) -> ToolGrammar:
        return ToolGrammar(calls=calls, separator="\n" if parallel else None)

    # ---- the history -------------------------------------------------------------------

    def new_id(self) -> str:
        return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))

    def prepare(self, messages: List[Dict[str, Any]],
                tools: Optional[List[Dict[str, Any]]]) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        """The messages as the template reads them, and the render's extra variables."""
        return [with_object_arguments(m) for m in messages], ({"tools": tools} if tools else {})


def with_object_arguments(message: Dict[str, Any]) -> Dict[str, Any]:
    """An assistant message whose calls carry their arguments as objects (the templates
    write them with `tojson`; JSON text would come out quoted twice)."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    out = []
    for call in calls:
        fn = dict(call.get("function") or {})
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                fn["arguments"] = json.loads(args) if args.strip() else {}
            except ValueError:
                pass  # the template shows what the client sent
        out.append({**call, "function": fn})
    return {**message, "tool_calls": out}


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `marker`."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


class HermesFormat(ToolFormat):
    name = "hermes"
    opener = "<tool_call>"
    closer = "</tool_call>"

    def parse(self, body: str, tool_names: Sequence[str]) -> List[Call]:
        return [_named(v, "arguments") for v in _json_values(body)]

    def call_pattern(self, name: str, schema: Dict[str, Any]) -> CallPattern:
        return CallPattern(prefix=f'<tool_call>\n{{"name": {json.dumps(name)}, "arguments": ',
                           json_schema=schema, suffix="}\n</tool_call>")


class Llama3JsonFormat(ToolFormat):
    name = "llama3_json"
    special_markers = ("<|python_tag|>",)
    parallel = False  # the template refuses more than one call per turn

    def find_call(self, text: str, at_start: bool, tool_names: Sequence[str]) -> Tuple[int, int]:
        if not at_start:
            return -1, 0
        body = text.lstrip()
        lead = len(text) - len(body)
        for opener in ("<|python_tag|>", "{"):
            if body.startswith(opener):
                skip = len(opener) if opener != "{" else 0
                return lead, lead + skip
            if opener.startswith(body):
                return -1, len(text)
        return -1, 0

    def parse(self, body: str, tool_names: Sequence[str]) -> List[Call]:
        return [_named(v, "parameters") for v in _json_values(body)]

    def call_pattern(self, name: str, schema: Dict[str, Any]) -> CallPattern:
        return CallPattern(prefix=f'{{"name": {json.dumps(name)}, "parameters": ',
                           json_schema=schema, suffix="}")


class MistralFormat(ToolFormat):
    name = "mistral"
    opener = "[TOOL_CALLS]"
    special_markers = ("[TOOL_CALLS]",)

    def parse(self, body: str, tool_names: Sequence[str]) -> List[Call]:
        calls: List[Call] = []
        for value in _json_values(body):
            for obj in value if isinstance(value, list) else [value]:
                calls.append(_named(obj, "arguments"))
        return calls

    def call_pattern(self, name: str, schema: Dict[str, Any]) -> CallPattern:
        return CallPattern(prefix=f'{{"name": {json.dumps(name)}, "arguments": ',
                           json_schema=schema, suffix="}")

    def _wrap(self, calls: List[CallPattern], parallel: bool) -> ToolGrammar:
        return ToolGrammar(begin="[TOOL_CALLS] [", calls=calls, separator=", " if parallel else None,
                           end="]", special=list(self.special_markers))

    def new_id(self) -> str:
        # the template refuses any other id: 9 letters or digits
        return "".join(secrets.choice(_ALNUM) for _ in range(9))


class Glm4Format(ToolFormat):
    name = "glm4"
    parallel = False

    def find_call(self, text: str, at_start: bool, tool_names: Sequence[str]) -> Tuple[int, int]:
        if not at_start:
            return -1, 0
        head = text.lstrip("\n")
        lead = len(text) - len(head)
        line, nl, _ = head.partition("\n")
        if nl:
            # the body keeps the name line: parse() reads the name from it
            return (lead, lead) if line.strip() in tool_names else (-1, 0)
        # no line yet: it may still become a tool's name
        return -1, len(text) if any(n.startswith(line) for n in tool_names) else 0

    def parse(self, body: str, tool_names: Sequence[str]) -> List[Call]:
        line, _, rest = body.lstrip("\n").partition("\n")
        values = _json_values(rest)
        if len(values) > 1:
            raise ValueError("more than one JSON value after the function name")
        return [(line.strip(), values[0] if values else {})]

    def call_pattern(self, name: str, schema: Dict[str, Any]) -> CallPattern:
        return CallPattern(prefix=f"{name}\n", json_schema=schema)

    def prepare(self, messages: List[Dict[str, Any]],
                tools: Optional[List[Dict[str, Any]]]) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
        # GLM-4's template reads the tools from a system message's `tools` key, a call as
        # an assistant turn whose metadata is the name and content the arguments, and a
        # result as an `observation` turn.
        out: List[Dict[str, Any]] = []
        for m in messages:
            if m.get("tool_calls"):
                for call in with_object_arguments(m)["tool_calls"]:
                    fn = call.get("function") or {}
                    out.append({"role": "assistant", "metadata": fn.get("name", ""),
                                "content": json.dumps(fn.get("arguments", {}), ensure_ascii=False)})
            elif m.get("role") == "tool":
                out.append({**m, "role": "observation", "metadata": ""})
            else:
                out.append({"metadata": "", **m})
        if tools:
            if out and out[0].get("role") == "system":
                out[0] = {**out[0], "tools": tools}
            else:
                out.insert(0, {"role": "system", "content": "", "metadata": "", "tools": tools})
        return out, {}


FORMATS: Mapping[str, ToolFormat] = MappingProxyType({f.name: f for f in (
    HermesFormat(), Llama3JsonFormat(), MistralFormat(), Glm4Format())})


def tool_format(name: Optional[str], model_name: str) -> ToolFormat:
    fmt = FORMATS.get(name or "")
    if fmt is None:
        raise InvalidRequestError(
            f"Model {model_name} cannot call tools (its family has no tool-call format); "
            "send the request without `tools`, or launch a model whose abilities include "
            "\"tools\" (`xinference registrations -t LLM`).",
            param="tools", code="tools_not_supported")
    return fmt
