"""What the chat and arena tabs compute from a streamed answer, apart from Gradio:
the text so far, time to first token, tokens per second, the chat history in the
OpenAI shape, and a readable sentence for an error."""

import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import requests

from ..client.common import APIError

Clock = Callable[[], float]
Translate = Callable[..., str]


@dataclass
class StreamStats:
    """Timings of one streamed answer, all from one monotonic clock."""

    start: float
    first_token: Optional[float] = None
    last_token: Optional[float] = None
    end: Optional[float] = None
    pieces: int = 0  # chunks that carried text
    usage_tokens: Optional[int] = None  # the server's count, when it sends usage

    @property
    def tokens(self) -> int:
        # A chunk may hold more than one token: the server's count wins when it has one.
        return self.usage_tokens if self.usage_tokens is not None else self.pieces

    @property
    def ttft(self) -> Optional[float]:
        return None if self.first_token is None else self.first_token - self.start

    @property
    def tokens_per_second(self) -> Optional[float]:
        """Decode speed: the tokens after the first over the time after the first.
        Counting from the request's start would mix prefill (and queueing) into it."""
        if self.first_token is None or self.last_token is None or self.tokens < 2:
            return None
        span = self.last_token - self.first_token
        return (self.tokens - 1) / span if span > 0 else None


def chunk_text(chunk: Dict[str, Any]) -> str:
    """The text of a chat (`delta.content`) or completion (`text`) chunk."""
    parts = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text:
            parts.append(text)
    return "".join(parts)


def follow(chunks: Iterable[Dict[str, Any]], clock: Clock = time.monotonic,
           start: Optional[float] = None) -> Iterator[Tuple[str, StreamStats]]:
    """Yields (answer so far, stats) after each piece of text, then once more when
    the stream ends, with `stats.end` set. Tool calls are no text: the server sends a
    call whole once the model has written it, too late to time the decoding by."""
    stats = StreamStats(start=clock() if start is None else start)
    answer = ""
    for chunk in chunks:
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage.get("completion_tokens") is not None:
            stats.usage_tokens = int(usage["completion_tokens"])
        piece = chunk_text(chunk)
        if not piece:
            continue
        now = clock()
        if stats.first_token is None:
            stats.first_token = now
        stats.last_token = now
        stats.pieces += 1
        answer += piece
        yield answer, stats
    stats.end = clock()
    yield answer, stats


class ToolCallCollector:
    """The tool calls of a streamed chat answer, put back together from their pieces
    (OpenAI streams a call as a chunk with its index, id and name, then chunks of its
    arguments), and the calls the server found invalid (`invalid_tool_calls`).

    `watch(chunks)` passes the chunks on unchanged, reading them as they go by."""

    def __init__(self) -> None:
        self._calls: Dict[int, Dict[str, Any]] = {}
        self.invalid: List[Dict[str, Any]] = []

    def watch(self, chunks: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        for chunk in chunks:
            self.add(chunk)
            yield chunk

    def add(self, chunk: Dict[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta")
            for piece in (delta.get("tool_calls") if isinstance(delta, dict) else None) or []:
                call = self._calls.setdefault(int(piece.get("index") or 0), {
                    "id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                call["id"] = piece.get("id") or call["id"]
                fn = piece.get("function") or {}
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
            self.invalid += [bad for bad in choice.get("invalid_tool_calls") or [] if isinstance(bad, dict)]

    @property
    def calls(self) -> List[Dict[str, Any]]:
        """The calls in the order of their index, each in the shape an assistant message's
        `tool_calls` takes: {"id", "type": "function", "function": {"name", "arguments"}}."""
        return [self._calls[i] for i in sorted(self._calls)]


def format_stats(stats: StreamStats, t: Translate) -> str:
    ttft = "—" if stats.ttft is None else f"{stats.ttft:.2f}"
    tps = "—" if stats.tokens_per_second is None else f"{stats.tokens_per_second:.1f}"
    return t("stats.line", tokens=stats.tokens, tps=tps, ttft=ttft)


def content_text(content: Any) -> str:
    """Gradio 6 hands chat content back as a list of parts; older shapes are a string."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or "")
    if isinstance(content, list):
        return "".join(content_text(part) for part in content)
    return ""


def to_messages(history: List[Dict[str, Any]], system_prompt: str = "") -> List[Dict[str, str]]:
    """A Chatbot history (plus a system prompt) as OpenAI chat messages."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt.strip() else []
    for item in history:
        role = item.get("role")
        if role in ("user", "assistant"):
            messages.append({"role": role, "content": content_text(item.get("content"))})
    return messages


_STATUS_KEYS = MappingProxyType({404: "error.not_found", 429: "error.busy", 503: "error.unavailable"})


def readable_error(exc: BaseException, t: Translate, endpoint: str = "") -> str:
    """One or two sentences a user can act on, never a traceback."""
    # the sentences around {detail} bring their own full stop
    detail = str(exc.detail if isinstance(exc, APIError) else exc).strip().rstrip(".")
    if isinstance(exc, APIError):
        key = _STATUS_KEYS.get(exc.status_code)
        if key is None:
            key = "error.invalid" if 400 <= exc.status_code < 500 else "error.server"
        return t(key, detail=detail or f"HTTP {exc.status_code}")
    if isinstance(exc, requests.ConnectionError):
        return t("error.unreachable", endpoint=endpoint)
    if isinstance(exc, requests.Timeout):
        return t("error.timeout", endpoint=endpoint)
    if isinstance(exc, ValueError):
        return t("error.input", detail=detail)
    if isinstance(exc, RuntimeError):
        # what the server sent as `data: {"error": ...}` in the middle of a stream
        return t("error.stream", detail=detail)
    return t("error.other", kind=type(exc).__name__, detail=detail)
