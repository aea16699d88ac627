"""Reading tool calls out of a generation as it streams.

Text outside call blocks streams on as prose. A call block is held until it closes,
then parsed and checked against the declared tools: a call of a declared tool whose
arguments validate against its schema is passed on; anything else is reported as an
invalid call, and its text stays in the prose, so a client never acts on a call the
model got wrong.
"""

import json
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

from jsonschema import validators
from jsonschema.exceptions import best_match

from ....types import GenerationDelta, ToolUse
from .formats import ToolFormat, function_of, parameters_of

Found = Tuple[str, List[Dict[str, Any]], List[Dict[str, Any]]]  # prose, calls, invalid


class ToolCallReader:
    def __init__(self, fmt: ToolFormat, use: ToolUse):
        self._fmt = fmt
        self._tools = {function_of(t).get("name"): t for t in use.tools}
        self._names = [n for n in self._tools if isinstance(n, str)]
        self._validators: Dict[str, Any] = {}
        self._buf = ""
        self._opener = ""  # the text that opened the block being read
        self._in_call = False
        self._at_start = True  # nothing but whitespace so far
        self.count = 0  # valid calls passed on

    def feed(self, text: str) -> Found:
        self._buf += text
        prose: List[str] = []
        calls: List[Dict[str, Any]] = []
        invalid: List[Dict[str, Any]] = []
        while True:
            if not self._in_call:
                start, body = self._fmt.find_call(self._buf, self._at_start, self._names)
                if start < 0:
                    out = self._buf[: len(self._buf) - body]
                    if not (self._at_start and not out.strip()):  # leading whitespace waits
                        self._say(out, prose)
                        self._buf = self._buf[len(out):]
                    break
                self._say(self._buf[:start], prose)
                self._opener, self._buf = self._buf[start:body], self._buf[body:]
                self._in_call = True
            else:
                close = self._fmt.find_close(self._buf)
                if close is None:
                    break
                raw = self._opener + self._buf[: close[1]]
                self._read(self._buf[: close[0]], raw, prose, calls, invalid)
                self._buf = self._buf[close[1]:]
                self._in_call = False
        return "".join(prose), calls, invalid

    def finish(self, text: str) -> Found:
        prose, calls, invalid = self.feed(text)
        rest, self._buf = self._buf, ""
        if self._in_call:  # a block without a closer runs to the end of the output
            more: List[str] = []
            self._read(rest, self._opener + rest, more, calls, invalid)
            prose += "".join(more)
        elif rest.strip() or not (self.count or invalid):
            prose += rest
        return prose, calls, invalid

    def _say(self, text: str, prose: List[str]) -> None:
        if not text:
            return
        if self._at_start and not text.strip():
            return  # whitespace before the first call
        self._at_start = False
        prose.append(text)

    def _read(self, body: str, raw: str, prose: List[str], calls: List[Dict[str, Any]],
              invalid: List[Dict[str, Any]]) -> None:
        try:
            found = self._fmt.parse(body, self._names)
        except ValueError as e:
            invalid.append({"name": None, "arguments": body.strip(),
                            "error": f"not a well-formed tool call: {e}"})
            self._say(raw, prose)
            return
        passed = 0
        for name, args in found:
            text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            error = self._check(name, args)
            if error is not None:
                invalid.append({"name": name if isinstance(name, str) else None,
                                "arguments": text, "error": error})
                continue
            calls.append({"index": self.count, "id": self._fmt.new_id(), "name": name,
                          "arguments": text})
            self.count += 1
            passed += 1
        if not passed:
            self._say(raw, prose)

    def _check(self, name: Any, args: Any) -> Optional[str]:
        if not isinstance(name, str) or name not in self._tools:
            declared = ", ".join(self._names) or "none"
            return f"the model called {name!r}, which is not a declared tool (declared: {declared})"
        if not isinstance(args, dict):
            return f"the arguments of {name!r} are not a JSON object"
        validator = self._validators.get(name)
        if validator is None:
            schema = parameters_of(self._tools[name])
            validator = self._validators[name] = validators.validator_for(schema)(schema)
        error = best_match(validator.iter_errors(args))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(the object)"
            return f"the arguments of {name!r} do not match its schema at {where}: {error.message}"
        return None


async def read_tool_calls(deltas: AsyncIterator[GenerationDelta], fmt: ToolFormat,
                          use: ToolUse) -> AsyncIterator[GenerationDelta]:
    """The engine's deltas with their text split into prose and tool calls."""
    reader = ToolCallReader(fmt, use)
    held: List[Dict[str, Any]] = []  # log-probabilities of deltas whose text is held
    try:
        async for delta in deltas:
            logprobs, held = held + delta.logprobs, []
            if delta.finish_reason:
                prose, calls, invalid = reader.finish(delta.text)
                reason = "tool_calls" if reader.count and delta.finish_reason == "stop" else delta.finish_reason
                yield delta.model_copy(update={"text": prose, "tool_calls": calls, "logprobs": logprobs,
                                               "invalid_tool_calls": invalid, "finish_reason": reason})
                return
            prose, calls, invalid = reader.feed(delta.text)
            if prose or calls or invalid:
                yield delta.model_copy(update={"text": prose, "tool_calls": calls,
                                               "invalid_tool_calls": invalid, "logprobs": logprobs})
            else:
                held = logprobs
    finally:
        await deltas.aclose()  # type: ignore[attr-defined]
