"""OpenAI's chat and completion endpoints: a request becomes a `GenerationJob` for
the gateway, and the replica's deltas become OpenAI's chunks or whole answer."""

import json
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional

from fastapi import Request
from fastapi.responses import Response

from ..errors import XinferenceError
from .errors import error_body
from .gateway import FrontEnd, Gateway, Generation, GenerationJob, Timings
from .inflight import current, use_request_id
from .protocol.openai import ChatCompletionRequest, CompletionRequest, SamplingRequest


class OpenAIFront(FrontEnd):
    """How one OpenAI request's answer is named and shaped: chat chunks and
    `chat.completion`, or `text_completion` for the completions API."""

    def __init__(self, kind: str, req: SamplingRequest, job: GenerationJob, logprobs: bool = False):
        self.kind = kind
        self.req = req
        self.job = job
        self.model = req.model
        self.rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.object = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self.logprobs = logprobs
        self.echo = kind == "completion" and bool(getattr(req, "echo", False))
        # per choice, where the next token's text starts in its answer (completions'
        # text_offset)
        self._offsets: Dict[int, int] = {}

    def _logprobs(self, entries: List[Dict[str, Any]], index: int = 0) -> Optional[Dict[str, Any]]:
        """OpenAI's logprobs object for these tokens of choice `index`: chat's `content`
        list, or the completions API's parallel lists."""
        if not self.logprobs:
            return None
        if self.kind == "chat":
            return {"content": [
                {"token": e["token"], "logprob": e["logprob"], "bytes": e["bytes"],
                 "top_logprobs": [{"token": t["token"], "logprob": t["logprob"], "bytes": t["bytes"]}
                                  for t in e["top"]]} for e in entries]}
        offsets = []
        at = self._offsets.get(index, 0)
        for e in entries:
            offsets.append(at)
            at += len(e["token"])
        self._offsets[index] = at
        return {"tokens": [e["token"] for e in entries],
                "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top"]} for e in entries],
                "text_offset": offsets}

    def chunks(self, delta: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The stream chunks for one delta: its text, then each tool call as OpenAI streams
        one (id and name first, then the arguments), the finish reason on the last."""
        reason = delta.get("finish_reason")
        index = int(delta.get("index") or 0)
        logprobs = self._logprobs(delta.get("logprobs") or [], index)
        if self.kind != "chat":
            choice = {"index": index, "text": delta["text"], "logprobs": logprobs, "finish_reason": reason}
            return [self._chunk(choice)]
        deltas: List[Dict[str, Any]] = []
        if delta["text"] or not (reason or delta.get("tool_calls")):
            deltas.append({"content": delta["text"]})
        for call in delta.get("tool_calls") or ():
            deltas.append({"tool_calls": [{"index": call["index"], "id": call["id"], "type": "function",
                                           "function": {"name": call["name"], "arguments": ""}}]})
            deltas.append({"tool_calls": [{"index": call["index"],
                                           "function": {"arguments": call["arguments"]}}]})
        if not deltas:
            deltas.append({})
        out = []
        for i, d in enumerate(deltas):
            last = i == len(deltas) - 1
            choice = {"index": index, "delta": d, "logprobs": logprobs if i == 0 else None,
                      "finish_reason": reason if last else None}
            if last and delta.get("invalid_tool_calls"):
                choice["invalid_tool_calls"] = delta["invalid_tool_calls"]
            out.append(self._chunk(choice))
        return out

    def _chunk(self, choice: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": self.rid, "object": self.object, "created": self.created, "model": self.model,
                "choices": [choice]}

    def whole(self, result: Dict[str, Any], timings: Timings) -> Dict[str, Any]:
        if self.echo:
            prompts = self.job.prompts()
            for choice in result["choices"]:
                choice["text"] = prompts[choice["index"] // self.job.n] + choice["text"]
        return {"id": self.rid, "object": "chat.completion" if self.kind == "chat" else "text_completion",
                "created": self.created, "model": self.model,
                "choices": [self._choice(c) for c in result["choices"]], "usage": _usage(result)}

    # ---- a stream ------------------------------------------------------------------

    def head(self) -> Iterable[str]:
        """Each chat choice opens with the assistant's role; an echoed completion with
        its prompt."""
        for index in range(self.job.choices()):
            if self.kind == "chat":
                head = self.chunks({"text": "", "index": index})[0]
                head["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                yield _sse(head)
            elif self.echo:
                prompt = self.job.prompts()[index // self.job.n]
                yield _sse(self.chunks({"text": prompt, "index": index})[0])

    def frames(self, delta: Dict[str, Any]) -> Iterable[str]:
        return [_sse(chunk) for chunk in self.chunks(delta)]

    def tail(self, gen: Generation) -> Iterable[str]:
        if self.req.include_usage and gen.finished:
            yield _sse({"id": self.rid, "object": self.object, "created": self.created, "model": self.model,
                        "choices": [], "usage": _usage(gen.usage)})
        yield "data: [DONE]\n\n"

    def error(self, e: XinferenceError) -> str:
        return _sse(error_body(e.message, e.error_type, e.param, e.code))

    def _choice(self, c: Dict[str, Any]) -> Dict[str, Any]:
        logprobs = self._logprobs(c.get("logprobs") or [], c["index"])
        if self.kind != "chat":
            return {"index": c["index"], "text": c["text"], "logprobs": logprobs,
                    "finish_reason": c["finish_reason"]}
        calls = c.get("tool_calls") or []
        message: Dict[str, Any] = {"role": "assistant", "content": c["text"] if c["text"] or not calls else None}
        if calls:
            message["tool_calls"] = [
                {"id": t["id"], "type": "function",
                 "function": {"name": t["name"], "arguments": t["arguments"]}} for t in calls]
        choice: Dict[str, Any] = {"index": c["index"], "message": message, "logprobs": logprobs,
                                  "finish_reason": c["finish_reason"]}
        if c.get("invalid_tool_calls"):
            choice["invalid_tool_calls"] = c["invalid_tool_calls"]
        return choice


def _usage(delta: Dict[str, Any]) -> Dict[str, Any]:
    p, c = int(delta.get("prompt_tokens", 0)), int(delta.get("completion_tokens", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": int(delta.get("cached_tokens", 0))}}


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


class OpenAIServing:
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    async def chat(self, req: ChatCompletionRequest, http: Request) -> Response:
        job = GenerationJob(req.model, "chat", req.plain_messages(), req.sampling(), req.chat_template_kwargs)
        return await self._serve(OpenAIFront("chat", req, job, req.logprobs), req, http)

    async def completion(self, req: CompletionRequest, http: Request) -> Response:
        job = GenerationJob(req.model, "completion", req.prompt, req.sampling())
        return await self._serve(OpenAIFront("completion", req, job, req.logprobs is not None), req, http)

    async def _serve(self, front: OpenAIFront, req: SamplingRequest, http: Request) -> Response:
        if req.request_id:
            use_request_id(req.request_id)
        tracked = current()
        if tracked is not None and req.user:
            tracked.end_user = req.user
        return await self._gateway.serve(front, front.job, http, bool(req.stream))
