"""Plain data shapes shared by engines, actors and the REST layer."""

from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, Field


class ToolUse(BaseModel):
    """The tools a chat request offers and how the model may use them."""

    # OpenAI tool definitions: {"type": "function", "function": {"name", "parameters", ...}}
    tools: List[Dict[str, Any]]
    # "auto": the model decides; "required": at least one call; any other value: a call
    # of the function of that name. Both forced forms constrain decoding with a grammar.
    choice: str = "auto"
    # whether a forced answer may hold several calls
    parallel: bool = True

    @property
    def forced(self) -> bool:
        return self.choice != "auto"


class CallPattern(BaseModel):
    """One way to write a tool call: literal text, JSON matching `schema`, literal text."""

    prefix: str
    json_schema: Dict[str, Any]
    suffix: str = ""


class ToolGrammar(BaseModel):
    """Output made only of tool calls: `begin`, one call (any of `calls`), then more calls
    each after `separator` (None: exactly one), then `end`. Engines turn it into their
    own grammar (GBNF for llama.cpp)."""

    begin: str = ""
    calls: List[CallPattern]
    separator: Optional[str] = None
    end: str = ""
    # pieces of the literal text that are special tokens of the model (Mistral's
    # [TOOL_CALLS]): the grammar asks for the token itself
    special: List[str] = Field(default_factory=list)


class SamplingParams(BaseModel):
    """What an engine needs to generate; validated once in the REST layer."""

    max_tokens: Optional[int] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 40
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: Optional[int] = None
    stop: List[str] = Field(default_factory=list)
    stop_token_ids: List[int] = Field(default_factory=list)
    # Never end at an end-of-generation token (benchmarks, fixed-length runs).
    ignore_eos: bool = False
    # Added to the logits of these token ids before sampling (-100 bans, +100 forces).
    logit_bias: Dict[int, float] = Field(default_factory=dict)
    # Report each generated token's log-probability and this many alternatives (0-20);
    # None: no log-probabilities.
    logprobs: Optional[int] = None
    # The LoRA adapter to generate with (a name given at launch); None: the base model.
    lora_name: Optional[str] = None
    # Constrain the output to JSON matching this schema ({"type": "object"}: any JSON
    # object). Only engines with `supports_grammar` can; the others answer 400.
    json_schema: Optional[Dict[str, Any]] = None
    # Output that must be tool calls (tool_choice "required" or a named function); only
    # engines with `supports_grammar` can, the others answer 400.
    tool_grammar: Optional[ToolGrammar] = None
    # Tools the chat offers; the LLM layer renders them and parses calls out of the output
    # (engines never see this: they get `tool_grammar` and `keep_special`).
    tool_use: Optional[ToolUse] = None
    # Special tokens (by their text) that the output must show rather than drop, such as
    # Mistral's [TOOL_CALLS], which tells calls from text.
    keep_special: List[str] = Field(default_factory=list)
    # Choices per prompt, and (completions) how many to generate to keep the n whose
    # tokens are likeliest on average. The LLM layer fans these out (engines get n == 1
    # and evaluate the shared prompt once, see LLMEngine.generate_n).
    n: int = 1
    best_of: Optional[int] = None


FinishReason = Literal["stop", "length", "tool_calls"]


class GenerationDelta(BaseModel):
    """One step of a generation: new text, and on the last step why it ended."""

    text: str = ""
    # which choice it belongs to (prompt p's choice j is p * n + j), for n > 1 or a list
    # of prompts
    index: int = 0
    finish_reason: Optional[FinishReason] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Prompt tokens whose KV state was reused from an earlier request.
    cached_tokens: int = 0
    # Tool calls completed in this step: {"index", "id", "name", "arguments"} with the
    # arguments as JSON text, already checked against the tool's schema.
    tool_calls: List[Dict[str, Any]] = Field(default_factory=list)
    # Calls the model wrote that name no declared tool or whose arguments do not match
    # its schema: {"name", "arguments", "error"}. Their text stays in `text`.
    invalid_tool_calls: List[Dict[str, Any]] = Field(default_factory=list)
    # With SamplingParams.logprobs: per token generated in this step, {"token", "bytes",
    # "logprob", "top": [{"token", "bytes", "logprob"}, ...]}.
    logprobs: List[Dict[str, Any]] = Field(default_factory=list)


class LoRASpec(BaseModel):
    """One LoRA adapter given at launch: the name requests use, and its folder."""

    lora_name: str = Field(min_length=1)
    local_path: str = Field(min_length=1)

