"""OpenAI request shapes (plus the Xinference sampling extras)."""

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ...constants import CHAT_TEMPLATE_VARIABLES, MAX_CHAT_MESSAGES
from .limits import StopText, Text, check_total_text
from .openai_tools import (
    MAX_TOOLS,
    AssistantToolCall,
    ToolChoice,
    ToolList,
    check_choice,
    tool_use,
)


class StreamOptions(BaseModel):
    include_usage: bool = False


# logit_bias: OpenAI's range per token, and a bound on how many tokens one request biases.
MAX_LOGIT_BIAS = 1024
# Choices one request may ask for in all (n, or best_of, per prompt), OpenAI's bound on n.
MAX_CHOICES = 128


class SamplingRequest(BaseModel):
    # Clients send keys that do not change the answer (metadata, store, ...): accept them.
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0)
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: Optional[int] = None
    stop: Optional[Union[StopText, List[StopText]]] = None
    stop_token_ids: Optional[List[int]] = Field(default=None, max_length=256)
    ignore_eos: bool = False
    # choices per prompt, each sampled on its own (choice i of a seeded request with
    # seed + i); the prompt is evaluated once for all of them
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    # The LoRA adapter to generate with (Xinference clients send it); a `model` that
    # names an adapter sets it too. None or "": the base model.
    lora_name: Optional[str] = None
    # The id POST /v1/models/{uid}/requests/{id}/abort stops it by (Xinference clients
    # send it in generate_config); the X-Request-Id header wins over it.
    request_id: Optional[str] = Field(default=None, max_length=128)
    # token id (as JSON object keys are text) -> added to its logit, -100 to 100
    logit_bias: Optional[Dict[str, float]] = Field(default=None, max_length=MAX_LOGIT_BIAS)
    # the end user, for usage accounting (FinishedRequest.end_user)
    user: Optional[str] = Field(default=None, max_length=256)

    @field_validator("logit_bias")
    @classmethod
    def _token_biases(cls, v: Optional[Dict[str, float]]) -> Optional[Dict[str, float]]:
        for key, bias in (v or {}).items():
            if not key.isdigit():
                raise ValueError(f"keys are token ids; {key[:40]!r} is not one")
            if not -100 <= bias <= 100:
                raise ValueError(f"the bias of token {key} is {bias}; it must be between -100 and 100")
        return v

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def sampling(self) -> Dict[str, Any]:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repetition_penalty": self.repetition_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": self.seed,
            "stop": stop,
            "stop_token_ids": list(self.stop_token_ids or []),
            "ignore_eos": self.ignore_eos,
            "lora_name": self.lora_name or None,
            "logit_bias": {int(k): float(v) for k, v in (self.logit_bias or {}).items()},
            "n": self.n,
        }

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Optional[Union[Text, List[Dict[str, Any]]]] = None
    # an assistant turn's calls, and the call a tool turn answers
    tool_calls: Optional[List[AssistantToolCall]] = Field(default=None, max_length=MAX_TOOLS)
    tool_call_id: Optional[str] = Field(default=None, max_length=256)

    def chars(self) -> int:
        """Characters of text in the content (a string, or the text of its parts)."""
        if isinstance(self.content, str):
            return len(self.content)
        parts = self.content or []
        return sum(len(p["text"]) for p in parts if isinstance(p.get("text"), str))


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: Optional[str] = None
    # "schema" would shadow a BaseModel attribute
    json_schema: Dict[str, Any] = Field(alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(BaseModel):
    """OpenAI's response_format: plain text, any JSON object, or JSON matching a schema."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JSONSchemaFormat] = None
    # llama-cpp-python's server takes {"type": "json_object", "schema": {...}}, which
    # older instructor versions send: the schema holds, not just any object
    object_schema: Optional[Dict[str, Any]] = Field(default=None, alias="schema")

    def schema_for_sampling(self) -> Optional[Dict[str, Any]]:
        """What SamplingParams.json_schema gets: None for text."""
        if self.type == "json_object":
            return self.object_schema or {"type": "object"}
        if self.type == "json_schema":
            if self.json_schema is None:
                raise ValueError('response_format of type "json_schema" needs json_schema.schema')
            return self.json_schema.json_schema
        return None


class ChatCompletionRequest(SamplingRequest):
    messages: List[ChatMessage] = Field(min_length=1, max_length=MAX_CHAT_MESSAGES)
    max_completion_tokens: Optional[int] = Field(default=None, ge=1)
    # extra variables for the chat template (e.g. enable_thinking); not the template's own
    chat_template_kwargs: Optional[Dict[str, Any]] = None
    tools: Optional[ToolList] = None
    tool_choice: Optional[ToolChoice] = None
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[ResponseFormat] = None
    # the API before tools: a silently dropped function would leave a client waiting
    functions: Optional[Any] = None
    function_call: Optional[Any] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(default=None, ge=0, le=20)

    @field_validator("top_logprobs")
    @classmethod
    def _with_logprobs(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return v

    @field_validator("chat_template_kwargs")
    @classmethod
    def _no_template_variables(cls, v: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        taken = sorted(k for k in v or {} if k in CHAT_TEMPLATE_VARIABLES)
        if taken:
            raise ValueError(f"may not set {', '.join(taken)}: the server passes "
                             f"{'it' if len(taken) == 1 else 'them'} to the template itself")
        return v

    @field_validator("messages")
    @classmethod
    def _bounded_text(cls, v: List[ChatMessage]) -> List[ChatMessage]:
        check_total_text(sum(m.chars() for m in v))
        return v

    @field_validator("tool_choice")
    @classmethod
    def _choice(cls, v: Optional[ToolChoice], info: ValidationInfo) -> Optional[ToolChoice]:
        check_choice(v, info.data.get("tools"))
        return v

    @field_validator("response_format")
    @classmethod
    def _schema_given(cls, v: Optional[ResponseFormat], info: ValidationInfo) -> Optional[ResponseFormat]:
        if v is not None and v.schema_for_sampling() is not None:  # json_schema needs a schema
            if info.data.get("tools") and info.data.get("tool_choice") != "none":
                raise ValueError("cannot be combined with tools: a JSON answer leaves no room for "
                                 'a tool call (send tool_choice "none", or one of the two)')
        return v

    @field_validator("functions", "function_call")
    @classmethod
    def _legacy_functions(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError('the "functions" API is replaced by "tools" and "tool_choice"; '
                             "send those")
        return v

    def sampling(self) -> Dict[str, Any]:
        out = super().sampling()
        if out["max_tokens"] is None:
            out["max_tokens"] = self.max_completion_tokens
        if self.response_format is not None:
            out["json_schema"] = self.response_format.schema_for_sampling()
        out["tool_use"] = tool_use(self.tools, self.tool_choice, self.parallel_tool_calls)
        out["logprobs"] = (self.top_logprobs or 0) if self.logprobs else None
        return out

    def plain_messages(self) -> List[Dict[str, Any]]:
        msgs = []
        for m in self.messages:
            d = m.model_dump(exclude_none=True)
            if d["role"] == "developer":
                d["role"] = "system"
            d.setdefault("content", "")
            msgs.append(d)
        return msgs


class CompletionRequest(SamplingRequest):
    # one prompt, or several, each answered with its own n choices
    prompt: Union[Text, List[Text]]
    echo: bool = False
    # how many alternatives per token to report with its log-probability
    logprobs: Optional[int] = Field(default=None, ge=0, le=20)
    # fill-in-the-middle: no engine here takes a suffix, and dropping it would answer
    # another question
    suffix: Optional[str] = None
    # generate this many choices per prompt and answer the n likeliest (mean token
    # log-probability); not streamed
    best_of: Optional[int] = Field(default=None, ge=1, le=MAX_CHOICES)

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not v:
                raise ValueError("the list of prompts is empty")
            check_total_text(sum(len(p) for p in v), "the prompts")
            if len(v) == 1:
                return v[0]
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is None:
            return v
        n = info.data.get("n") or 1
        if v < n:
            raise ValueError(f"best_of ({v}) must be at least n ({n})")
        if v > n and info.data.get("stream"):
            raise ValueError("best_of above n cannot be streamed: the choices are ranked when all "
                             "have ended; send stream false, or best_of equal to n")
        return v

    @model_validator(mode="after")
    def _bounded_choices(self) -> "CompletionRequest":
        prompts = len(self.prompt) if isinstance(self.prompt, list) else 1
        choices = prompts * (self.best_of or self.n)
        if choices > MAX_CHOICES:
            raise ValueError(f"{prompts} prompts x {self.best_of or self.n} choices make {choices} "
                             f"generations; at most {MAX_CHOICES} are taken per request")
        return self

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: Optional[str]) -> Optional[str]:
        if v:
            raise ValueError("suffix (fill-in-the-middle) is not supported by these engines")
        return v

    @field_validator("logprobs")
    @classmethod
    def _not_with_echo(cls, v: Optional[int], info: ValidationInfo) -> Optional[int]:
        if v is not None and info.data.get("echo"):
            raise ValueError("logprobs with echo would need the prompt's log-probabilities, "
                             "which are not computed; send one of the two")
        return v

    def sampling(self) -> Dict[str, Any]:
        return {**super().sampling(), "logprobs": self.logprobs, "best_of": self.best_of}
