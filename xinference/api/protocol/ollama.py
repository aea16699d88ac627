"""Ollama's request shapes, and the pure pieces of its answers (names, options,
NDJSON lines, timing fields, model details), for the /api/* routes.

Ollama names models `name:tag`; here a model is named by its model uid, and the tag
`latest` is implied, so `gemma` and `gemma:latest` are the same model.
"""

import hashlib
import json
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Annotated, Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...constants import MAX_CHAT_MESSAGES, MAX_EMBEDDING_INPUTS
from .limits import StopText, Text, check_total_text
from .openai_tools import ToolList

NDJSON = "application/x-ndjson"
LATEST = ":latest"
# The Ollama release whose API these routes follow (done_reason, /api/embed, think,
# capabilities in /api/show); clients read it from /api/version.
OLLAMA_API_VERSION = "0.9.0"
# Ollama's sampling defaults, used for every option a request leaves out.
OLLAMA_DEFAULTS = MappingProxyType({"temperature": 0.8, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1})
# Models here stay loaded until deleted: /api/ps says so with a time that never comes.
NEVER_EXPIRES = "9999-12-31T23:59:59Z"
_FORMATS = MappingProxyType({"ggufv2": "gguf", "ggmlv3": "ggml", "pytorch": "safetensors"})
# Stop sequences one request may give (each is matched against every new piece of text).
MAX_OLLAMA_STOPS = 16


class OllamaOptions(BaseModel):
    """The options that shape sampling. Load-time ones (num_gpu, num_thread, ...) and
    samplers we do not have (mirostat, min_p, ...) are accepted and ignored, as Ollama
    ignores options a model does not use."""

    model_config = ConfigDict(extra="ignore")

    num_predict: Optional[int] = None  # -1: until the model stops, -2: fill the context
    temperature: Optional[float] = Field(default=None, ge=0.0)
    top_p: Optional[float] = Field(default=None, ge=0.0, le=1.0)
    top_k: Optional[int] = Field(default=None, ge=0)
    repeat_penalty: Optional[float] = Field(default=None, gt=0.0)
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    seed: Optional[int] = None  # negative: a random seed
    stop: Optional[Union[StopText, Annotated[List[StopText], Field(max_length=MAX_OLLAMA_STOPS)]]] = None
    num_ctx: Optional[int] = Field(default=None, ge=1)


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: Optional[Text] = ""
    images: Optional[List[str]] = None
    tool_calls: Optional[List[Dict[str, Any]]] = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, v: str) -> str:
        if v not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"unknown role {v!r}: use system, user, assistant or tool")
        return v


class _GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    options: Optional[OllamaOptions] = None
    # "json", a JSON schema, or ""/None for free text
    format: Optional[Union[str, Dict[str, Any]]] = None
    stream: Optional[bool] = True
    keep_alive: Optional[Union[int, float, str]] = None  # accepted: models stay until deleted
    think: Optional[Union[bool, str]] = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: Any) -> Any:
        format_schema(v)
        return v

    @property
    def streaming(self) -> bool:
        return self.stream is not False

    @property
    def wants_thinking(self) -> bool:
        return self.think not in (None, False, "")

    @property
    def unloads(self) -> bool:
        return self.keep_alive in (0, "0", "0s", "0m")


class OllamaChatRequest(_GenerationRequest):
    messages: List[OllamaMessage] = Field(default_factory=list, max_length=MAX_CHAT_MESSAGES)
    tools: Optional[ToolList] = None

    @field_validator("messages")
    @classmethod
    def _bounded_text(cls, v: List[OllamaMessage]) -> List[OllamaMessage]:
        check_total_text(sum(len(m.content or "") for m in v))
        return v

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)

    def tool_use(self) -> Optional[Dict[str, Any]]:
        """SamplingParams.tool_use: Ollama lets the model decide, always."""
        if not self.tools:
            return None
        return {"tools": [t.model_dump(exclude_none=True) for t in self.tools], "choice": "auto"}

    def plain_messages(self) -> List[Dict[str, Any]]:
        out = []
        for m in self.messages:
            msg: Dict[str, Any] = {"role": m.role, "content": m.content or ""}
            if m.tool_calls:  # Ollama's calls carry their arguments as objects, and no id
                msg["tool_calls"] = [{"id": "", "type": "function", "function": {
                    "name": (c.get("function") or {}).get("name", ""),
                    "arguments": (c.get("function") or {}).get("arguments", {})}}
                    for c in m.tool_calls if isinstance(c, dict)]
            out.append(msg)
        return out


class OllamaGenerateRequest(_GenerationRequest):
    prompt: Optional[Text] = None
    system: Optional[Text] = None
    suffix: Optional[str] = None
    template: Optional[str] = None
    context: Optional[List[int]] = None
    raw: Optional[bool] = None
    images: Optional[List[str]] = None

    @model_validator(mode="after")
    def _supported(self) -> "OllamaGenerateRequest":
        for key, why in (("suffix", "fill-in-the-middle (suffix) is not supported"),
                         ("template", "a per-request template is not supported: the model's "
                                      "chat template applies, or send raw: true"),
                         ("context", "context (token ids of an earlier answer) is not "
                                     "supported: send the conversation to /api/chat")):
            if getattr(self, key):
                raise ValueError(why)
        return self


class OllamaEmbedRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: Union[Text, List[Text]] = Field(description=f"at most {MAX_EMBEDDING_INPUTS} inputs")
    truncate: Optional[bool] = None  # Ollama's default: true
    dimensions: Optional[int] = Field(default=None, ge=1)
    options: Optional[Dict[str, Any]] = None
    keep_alive: Optional[Union[int, float, str]] = None

    @field_validator("input")
    @classmethod
    def _bounded(cls, v: Union[str, List[str]]) -> Union[str, List[str]]:
        if isinstance(v, list) and len(v) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"input has {len(v)} items; one request may embed at most "
                             f"{MAX_EMBEDDING_INPUTS}: send them in several requests")
        return v


class OllamaEmbeddingsRequest(BaseModel):
    """The older /api/embeddings: one prompt, one vector."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    prompt: Text = ""
    options: Optional[Dict[str, Any]] = None
    keep_alive: Optional[Union[int, float, str]] = None


class OllamaModelRequest(BaseModel):
    """/api/show, /api/delete and /api/pull name the model as `model` (older clients:
    `name`)."""

    model_config = ConfigDict(extra="ignore")

    model: Optional[str] = None
    name: Optional[str] = None
    stream: Optional[bool] = True  # /api/pull only
    insecure: Optional[bool] = None

    @model_validator(mode="after")
    def _named(self) -> "OllamaModelRequest":
        if not (self.model or self.name):
            raise ValueError("model is required")
        return self

    @property
    def model_name(self) -> str:
        return str(self.model or self.name)


# ---- names, options, formats -----------------------------------------------------


def model_uid(name: str) -> str:
    """The model uid an Ollama name means: `uid:latest` is `uid`."""
    return name[: -len(LATEST)] if name.endswith(LATEST) else name


def ollama_name(uid: str) -> str:
    """How /api/tags names a model: with Ollama's `:latest` tag, unless it has a tag."""
    return uid if ":" in uid else uid + LATEST


def sampling_params(options: Optional[OllamaOptions]) -> Dict[str, Any]:
    """SamplingParams fields for Ollama options, Ollama's defaults filling the gaps."""
    o = options or OllamaOptions()

    def pick(value: Any, key: str) -> Any:
        return OLLAMA_DEFAULTS[key] if value is None else value

    n = o.num_predict
    return {
        "max_tokens": n if n is not None and n > 0 else None,
        "temperature": pick(o.temperature, "temperature"),
        "top_p": pick(o.top_p, "top_p"),
        "top_k": pick(o.top_k, "top_k"),
        "repetition_penalty": pick(o.repeat_penalty, "repeat_penalty"),
        "presence_penalty": o.presence_penalty or 0.0,
        "frequency_penalty": o.frequency_penalty or 0.0,
        "seed": o.seed if o.seed is not None and o.seed >= 0 else None,
        "stop": [o.stop] if isinstance(o.stop, str) else list(o.stop or []),
    }


def format_schema(fmt: Any) -> Optional[Dict[str, Any]]:
    """SamplingParams.json_schema for Ollama's `format`: "json" is any JSON object."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "object"}
    if isinstance(fmt, dict):
        return fmt
    raise ValueError(f'format must be "json" or a JSON schema object, not {fmt!r}')


# ---- answers -----------------------------------------------------------------------


def ndjson(obj: Any) -> str:
    """One line of a newline-delimited JSON stream."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def iso_time(ts: Optional[float] = None) -> str:
    """RFC 3339 in UTC, as Ollama writes times (`ts`: seconds since the epoch, or now)."""
    moment = datetime.now(timezone.utc) if ts is None else datetime.fromtimestamp(ts, timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def timing_fields(started_ns: int, first_ns: int, last_ns: int, ended_ns: int,
                  prompt_tokens: int, completion_tokens: int) -> Dict[str, int]:
    """Ollama's counters, durations in nanoseconds: prompt evaluation is the wait for
    the first piece of text, evaluation the rest. Never 0, which clients divide by."""
    return {
        "total_duration": max(1, ended_ns - started_ns),
        "load_duration": 0,  # a model here is loaded before it can be asked
        "prompt_eval_count": int(prompt_tokens),
        "prompt_eval_duration": max(1, first_ns - started_ns),
        "eval_count": int(completion_tokens),
        "eval_duration": max(1, last_ns - first_ns),
    }


def reply(kind: str, model: str, text: str,
          tool_calls: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """One streamed piece of /api/chat ("chat") or /api/generate ("generate"); a chat's
    tool calls as Ollama writes them (arguments as an object)."""
    body: Dict[str, Any] = {"model": model, "created_at": iso_time()}
    if kind == "chat":
        body["message"] = {"role": "assistant", "content": text}
        if tool_calls:
            body["message"]["tool_calls"] = [
                {"function": {"index": c["index"], "name": c["name"], "arguments": json.loads(c["arguments"])}}
                for c in tool_calls]
    else:
        body["response"] = text
    body["done"] = False
    return body


def done_reply(kind: str, model: str, text: str, done_reason: str,
               timings: Optional[Dict[str, int]] = None,
               tool_calls: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The last object of an answer: `done`, why it ended and, for a generation, timings.
    Ollama says "stop" for an answer that ends in tool calls."""
    reason = "stop" if done_reason == "tool_calls" else done_reason
    return {**reply(kind, model, text, tool_calls), "done": True, "done_reason": reason, **(timings or {})}


# ---- models ------------------------------------------------------------------------


def parameter_size(size_in_billions: Any) -> str:
    """"0_27" -> "270M", 7 -> "7B", "1_8" -> "1.8B"; "" when unknown."""
    try:
        billions = float(str(size_in_billions).replace("_", "."))
    except ValueError:
        return ""
    return f"{billions * 1000:g}M" if billions < 1 else f"{billions:g}B"


def model_details(desc: Dict[str, Any]) -> Dict[str, Any]:
    """Ollama's `details` of a model, from our describe."""
    family = desc.get("model_name") or ""
    quant = str(desc.get("quantization") or "")
    return {
        "parent_model": desc.get("parent") or "",
        "format": _FORMATS.get(desc.get("model_format") or "", desc.get("model_format") or ""),
        "family": family,
        "families": [family],
        "parameter_size": parameter_size(desc.get("model_size_in_billions")),
        "quantization_level": "" if quant.lower() in ("", "none") else quant.upper(),
    }


def model_digest(uid: str, desc: Dict[str, Any]) -> str:
    """A stable id of one launch of a model (Ollama's is its manifest's sha256)."""
    key = "|".join(str(desc.get(k)) for k in ("model_name", "model_format", "model_size_in_billions",
                                               "quantization", "model_engine", "created"))
    return hashlib.sha256(f"{uid}|{key}".encode()).hexdigest()


def model_entry(uid: str, desc: Dict[str, Any]) -> Dict[str, Any]:
    """One model of /api/tags."""
    name = ollama_name(uid)
    return {
        "name": name,
        "model": name,
        "modified_at": iso_time(desc.get("created")),
        "size": int(desc.get("weights_bytes") or 0),
        "digest": model_digest(uid, desc),
        "details": model_details(desc),
    }


def capabilities(desc: Dict[str, Any]) -> List[str]:
    abilities = set(desc.get("model_ability") or [])
    caps = []
    if abilities & {"generate", "chat"}:
        caps.append("completion")
    if "tools" in abilities:
        caps.append("tools")
    if "vision" in abilities:
        caps.append("vision")
    if abilities & {"reasoning", "hybrid"}:
        caps.append("thinking")
    if desc.get("model_type") == "embedding":
        caps.append("embedding")
    return caps


def model_info(desc: Dict[str, Any]) -> Dict[str, Any]:
    """/api/show's `model_info`, keyed as in a GGUF header."""
    arch = desc.get("model_name") or ""
    info: Dict[str, Any] = {"general.architecture": arch, "general.basename": arch}
    try:
        info["general.parameter_count"] = int(
            float(str(desc.get("model_size_in_billions")).replace("_", ".")) * 1e9)
    except ValueError:
        pass
    context = desc.get("context_length") or desc.get("max_tokens")
    if context:
        info[f"{arch}.context_length"] = int(context)
    if desc.get("dimensions"):
        info[f"{arch}.embedding_length"] = int(desc["dimensions"])
    return info
