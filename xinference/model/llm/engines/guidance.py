"""Constrained decoding, the same on every engine that samples in our code: output held
to a JSON schema (response_format, Ollama's `format`) or to tool calls (`ToolGrammar`).

llguidance (Microsoft's Rust grammar engine) keeps one matcher per sequence; before a
sequence samples, every token its grammar cannot take next is set to -inf in that
sequence's row of logits, so whatever sampler runs after it (greedy, top-k/top-p,
penalties) only chooses among tokens that keep the output valid; rows without a
grammar in the same batch are untouched. Chosen over xgrammar (whose masks are ~3x
quicker to compute) for: no torch dependency (the llama.cpp engine runs without it),
grammars built in ~2 ms instead of 30-100 ms (a request's schema needs no cache), JSON
schema keywords such as minimum/maximum enforced (llama.cpp's GBNF converter dropped
them), and parser limits that bound what a hostile grammar can cost.

llguidance is imported only when a request asks for a constraint.
"""

import asyncio
import json
import os
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ....errors import InvalidRequestError
from ....types import SamplingParams, ToolGrammar

# JSON without free whitespace: a small model may otherwise wander into endless newlines.
JSON_OPTIONS: Mapping[str, Any] = MappingProxyType({"whitespace_flexible": False, "item_separator": ", ",
                                "key_separator": ": "})
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def _closed(schema: Any) -> Any:
    """`schema` with every object that lists its properties closed to others unless it
    says otherwise, as llama.cpp's, xgrammar's and OpenAI's strict modes read schemas: a
    client asking for {"color", "bright"} means those keys (pydantic's schemas never
    say additionalProperties), not any extra ones a model may invent."""
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out: Dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):  # name -> schema, not a schema
            out[key] = {name: _closed(v) for name, v in value.items()}
        elif key in ("const", "enum", "default", "examples"):  # values, not schemas
            out[key] = value
        else:
            out[key] = _closed(value)
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def _with_options(schema: Dict[str, Any]) -> Dict[str, Any]:
    return {**_closed(schema), "x-guidance": {**JSON_OPTIONS, **(schema.get("x-guidance") or {})}}


def _literal(text: str, special_id: Callable[[str], Optional[int]], specials: List[str]) -> str:
    """Lark for `text`, with the special tokens named in `specials` matched as those tokens."""
    parts: List[str] = []
    rest = text
    while rest:
        hits = [(rest.find(s), s) for s in specials if s and rest.find(s) >= 0]
        if not hits:
            parts.append(json.dumps(rest, ensure_ascii=False))
            break
        at, mark = min(hits)
        if at:
            parts.append(json.dumps(rest[:at], ensure_ascii=False))
        token = special_id(mark)
        parts.append(f"<[{token}]>" if token is not None else json.dumps(mark, ensure_ascii=False))
        rest = rest[at + len(mark):]
    return " ".join(parts)


def tool_lark(grammar: ToolGrammar, special_id: Callable[[str], Optional[int]]) -> str:
    """A Lark grammar (llguidance's dialect, with %json) for output made of tool calls."""

    def lit(text: str) -> str:
        return _literal(text, special_id, grammar.special)

    rules = []
    names = []
    for i, call in enumerate(grammar.calls):
        body = " ".join(p for p in (lit(call.prefix), f"args{i}", lit(call.suffix)) if p)
        rules.append(f"call{i}: {body}")
        rules.append(f"args{i}: %json {json.dumps(_with_options(call.json_schema))}")
        names.append(f"call{i}")
    rules.append("call: " + " | ".join(names))
    body = "call" if grammar.separator is None else f"call ({lit(grammar.separator)} call)*"
    start = " ".join(p for p in (lit(grammar.begin), body, lit(grammar.end)) if p)
    return "\n".join([f"start: {start}", *rules])


def grammar_of(params: SamplingParams, special_id: Callable[[str], Optional[int]]) -> Optional[str]:
    """The llguidance grammar a request's output must follow; None if free."""
    from llguidance import LLMatcher

    if params.json_schema is not None:
        return LLMatcher.grammar_from_json_schema(_with_options(params.json_schema))
    if params.tool_grammar is not None:
        return LLMatcher.grammar_from_lark(tool_lark(params.tool_grammar, special_id))
    return None


class Constraint:
    """One sequence's grammar state: masks its logits row, follows its tokens."""

    def __init__(self, tokenizer: Any, grammar: str, param: str):
        from llguidance import LLMatcher

        self._matcher = LLMatcher(tokenizer, grammar, log_level=0)
        self.vocab_size = int(tokenizer.vocab_size)
        if self._matcher.is_error():
            what = "JSON schema" if param == "response_format" else "tools' schemas"
            raise InvalidRequestError(
                f"The {what} cannot be enforced as an output grammar: "
                f"{self._matcher.get_error()[:500]}", param=param)
        # the next token's mask (one bit per token), when computed ahead with others
        # (compute_masks); else computed when asked for
        self._mask: Optional[np.ndarray] = None

    def allowed(self, width: int) -> np.ndarray:
        """True for each token the grammar allows next, over a row of `width` logits
        (the model's row may be wider than the tokenizer: those are never allowed)."""
        mask = self._mask
        if mask is None:
            mask = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(mask, count=min(width, mask.size * 8), bitorder="little").view(np.bool_)
        if bits.size < width:
            bits = np.concatenate([bits, np.zeros(width - bits.size, dtype=np.bool_)])
        return bits

    def apply(self, row: np.ndarray) -> None:
        """Masks a float32 row of logits in place."""
        np.copyto(row, np.float32(-np.inf), where=~self.allowed(row.shape[0]))

    def allows(self, token: int) -> bool:
        """Whether the grammar takes `token` next: a check of one token, microseconds,
        where a whole mask of a 262k vocabulary can take a millisecond. Greedy rows
        check their argmax and compute the mask only when it is refused."""
        return 0 <= token < self.vocab_size and self._matcher.validate_tokens([token]) == 1

    def accept(self, token: int) -> None:
        self._matcher.consume_token(token)
        self._mask = None

    @property
    def done(self) -> bool:
        """The output is complete: the grammar allows nothing but the end."""
        return self._matcher.is_stopped()


_executor: Any = None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def compute_masks(constraints: Sequence[Constraint]) -> None:
    """The next masks of a batch's constrained rows, computed together on llguidance's
    thread pool with the GIL released (one by one, a long-string schema's mask on a 262k
    vocabulary takes over a millisecond, and a batch's add up in the step)."""
    global _executor
    if len(constraints) < 2:
        return  # computed when applied, the same cost
    from llguidance import LLExecutor
    from llguidance.numpy import allocate_token_bitmask, fill_next_token_bitmask_par

    if _executor is None:
        # its default takes 80% of the CPUs, rounded down: one thread on a 2-core machine
        _executor = LLExecutor(num_threads=_cpus())
    by_size: Dict[int, List[Constraint]] = {}
    for c in constraints:
        by_size.setdefault(c.vocab_size, []).append(c)
    for size, group in by_size.items():
        masks = allocate_token_bitmask(len(group), size)
        fill_next_token_bitmask_par(_executor, [(c._matcher, i) for i, c in enumerate(group)], masks)
        for i, c in enumerate(group):
            c._mask = masks[i].view(np.uint8)


class GuideTokenizer:
    """An engine's llguidance tokenizer (its vocabulary as byte strings), built once, on
    the first request that needs a constraint, off the event loop: ~2 s for a 262k-token
    vocabulary, which a replica that never constrains should not pay at load."""

    def __init__(self, build: Callable[[], Any]):
        self._build = build
        self._tokenizer: Any = None
        self._lock = asyncio.Lock()

    async def get(self) -> Any:
        if self._tokenizer is None:
            async with self._lock:
                if self._tokenizer is None:
                    self._tokenizer = await asyncio.to_thread(self._build)
        return self._tokenizer

    async def constraint(self, params: SamplingParams,
                         special_id: Callable[[str], Optional[int]]) -> Optional[Constraint]:
        """The constraint a request asks for, None if none; a 400 if it cannot be enforced
        (made on the event loop, before the request queues for a slot)."""
        grammar = grammar_of(params, special_id)
        if grammar is None:
            return None
        param = "response_format" if params.json_schema is not None else "tool_choice"
        return Constraint(await self.get(), grammar, param)
