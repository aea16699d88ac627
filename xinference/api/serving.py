"""Chat and completion serving: validate -> ask a replica -> shape as OpenAI.

One template for both endpoints; they differ only in how a request becomes a
prompt and how a delta becomes a chunk. The part below the shaping is shared with
the Ollama routes (ollama_serving.py): a `GenerationJob` goes to a replica, and an
open stream comes back as a `Generation`, which yields the replica's deltas (text,
token counts) and times them; `stream_response` frames them for HTTP and closes the
stream however it ends.
"""

import asyncio
import json
import logging
import time
import uuid
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Dict,
    List,
    NamedTuple,
    Optional,
    Sequence,
    TypeVar,
)

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..answers import USAGE_KEYS, Answers
from ..errors import InvalidRequestError, XinferenceError
from .errors import ClientGone, error_body, unexpected
from .inflight import abortable, current, use_request_id
from .prefix_affinity import prefix_keys, prompt_text
from .protocol.openai import ChatCompletionRequest, CompletionRequest, SamplingRequest
from .replicas import Lease, ReplicaRouter, unreachable

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Shape:
    """How one endpoint names and shapes its responses."""

    def __init__(self, kind: str, logprobs: bool = False):
        self.kind = kind
        self.prefix = "chatcmpl" if kind == "chat" else "cmpl"
        self.object = "chat.completion.chunk" if kind == "chat" else "text_completion"
        self.logprobs = logprobs
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

    def chunks(self, rid: str, model: str, created: int, delta: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The stream chunks for one delta: its text, then each tool call as OpenAI streams
        one (id and name first, then the arguments), the finish reason on the last."""
        reason = delta.get("finish_reason")
        index = int(delta.get("index") or 0)
        logprobs = self._logprobs(delta.get("logprobs") or [], index)
        if self.kind != "chat":
            choice = {"index": index, "text": delta["text"], "logprobs": logprobs, "finish_reason": reason}
            return [self._chunk(rid, model, created, choice)]
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
            out.append(self._chunk(rid, model, created, choice))
        return out

    def _chunk(self, rid: str, model: str, created: int, choice: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": rid, "object": self.object, "created": created, "model": model, "choices": [choice]}

    def whole(self, rid: str, model: str, created: int, result: Dict[str, Any]) -> Dict[str, Any]:
        """The whole answer, from answers.Answers' result."""
        return {"id": rid, "object": "chat.completion" if self.kind == "chat" else "text_completion",
                "created": created, "model": model,
                "choices": [self._choice(c) for c in result["choices"]], "usage": _usage(result)}

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


def _sse_error(e: XinferenceError) -> str:
    return _sse(error_body(e.message, e.error_type, e.param, e.code))


async def _unless_disconnected(http: Request, coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro`, cancelling it (and with it the remote call, which aborts decoding)
    if the HTTP client goes away first or the request is aborted."""
    task = asyncio.ensure_future(coro)
    try:
        with abortable(task):
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.5)
                if done:
                    return task.result()
                if await http.is_disconnected():
                    task.cancel()
                    raise ClientGone()
    finally:
        if not task.done():
            task.cancel()


async def _release(it: Any) -> None:
    """Ends a remote generator now (aborting its decoding if it still runs).

    xoscar's iterator wrapper otherwise destroys the generator again from `__del__`,
    in a new thread that the collecting thread joins: that blocks this event loop for
    a round trip per finished stream, and hangs the process at exit when the replica
    is gone. Once we have destroyed it ourselves, that second destroy is switched off.
    """
    try:
        await it.destroy()
    except Exception as e:  # the replica may be gone already
        logger.debug("destroying a stream: %s", e)
    finally:
        it._gc_destroy = False


def _for_adapter(args: tuple, model: str, lease: Lease) -> tuple:
    """The call's arguments with the LoRA adapter in the sampling params: the one
    `model` named, else the request's own `lora_name`, which must be one of the model's
    adapters (an engine without LoRA would otherwise quietly use the base model)."""
    kind, payload, params, template_kwargs = args
    asked = params.get("lora_name")
    if lease.lora_name is not None:
        if asked not in (None, lease.lora_name):
            raise InvalidRequestError(
                f"model {model!r} is a LoRA adapter, but lora_name asks for adapter {asked!r}; "
                f"send lora_name {lease.lora_name!r} or none, or name the base model in `model`.",
                param="lora_name",
            )
        return kind, payload, {**params, "lora_name": lease.lora_name}, template_kwargs
    known = lease.route.lora_names
    if asked is not None and asked not in known:
        raise InvalidRequestError(
            f"Model {lease.route.model_uid} has no LoRA adapter {asked!r}; "
            + (f"its adapters: {', '.join(known)}." if known else "it was launched without adapters."),
            param="lora_name",
        )
    return args


class GenerationJob(NamedTuple):
    """One generation request, whichever API it came through."""

    model: str  # as the request named it: a model uid, adapter name or model name
    kind: str  # "chat" (payload: messages) or "completion" (payload: a prompt)
    payload: Any
    params: Dict[str, Any]  # SamplingParams fields
    template_kwargs: Optional[Dict[str, Any]] = None

    def args(self) -> tuple:
        return self.kind, self.payload, self.params, self.template_kwargs

    def prefix(self) -> List[bytes]:
        """Keys of the prompt's beginning, for routing to the replica that cached it."""
        first = self.payload[0] if self.kind == "completion" and isinstance(self.payload, list) else self.payload
        return prefix_keys(prompt_text(self.kind, first))

    def prompts(self) -> List[Any]:
        """The prompts it answers: a completion may send a list."""
        return self.payload if self.kind == "completion" and isinstance(self.payload, list) else [self.payload]

    @property
    def n(self) -> int:
        return int(self.params.get("n") or 1)

    def choices(self) -> int:
        """How many choices the answer has: n per prompt."""
        return self.n * len(self.prompts())


class Generation:
    """A stream open on a replica, holding a slot of it until `close()`.

    The first delta was read when it opened, so a bad request failed as a plain HTTP
    error. It also keeps when the deltas came, in perf_counter nanoseconds, for the
    Ollama timing fields: prompt evaluation ~ request to first delta, evaluation ~ first
    to last delta.
    """

    def __init__(self, router: ReplicaRouter, lease: Lease, it: Any,
                 first: Optional[Dict[str, Any]], started_ns: int, choices: int = 1):
        self._router = router
        self._lease = lease
        self._it = it
        self.first = first
        self.last = first
        self.choices = choices
        self.finished = 0  # choices whose last delta came
        self.usage = dict.fromkeys(USAGE_KEYS, 0)  # of the finished choices
        self.started_ns = started_ns
        self.first_ns = self.last_ns = time.perf_counter_ns()
        self._closed = False
        self._req = current()  # told about each delta (metrics, usage); None outside a request
        if self._req is not None:
            self._req.streamed = True
            if first is None:
                self._req.completed = True
            else:
                self._req.first_delta()
                self._req.delta(first)

    async def deltas(self) -> AsyncIterator[Dict[str, Any]]:
        """Every delta, the first included, until every choice's last one (which has
        finish_reason and that choice's usage)."""
        if self.first is None:
            return
        self._count(self.first)
        yield self.first
        while self.finished < self.choices:
            try:
                delta = await self._next()
            except StopAsyncIteration:
                return
            except Exception as e:
                if unreachable(e):  # the stream ends with an error frame; others skip it
                    self._router.mark_down(self._lease, e)
                raise
            self.last, self.last_ns = delta, time.perf_counter_ns()
            self._count(delta)
            yield delta

    def _count(self, delta: Dict[str, Any]) -> None:
        if delta.get("finish_reason"):
            self.finished += 1
            for key in USAGE_KEYS:
                self.usage[key] += int(delta.get(key) or 0)

    async def _next(self) -> Dict[str, Any]:
        req = self._req
        if req is None:
            return await self._it.__anext__()
        # a task, so that an abort can cancel it (cancelling the remote call ends decoding)
        call = asyncio.ensure_future(self._it.__anext__())
        try:
            with abortable(call):
                delta = await call
        except StopAsyncIteration:
            raise
        except Exception as e:  # what the stream's last frame will say
            req.failed(getattr(e, "status_code", 500))
            raise
        req.delta(delta)
        return delta

    async def drain(self) -> Dict[str, Any]:
        """The whole answer (answers.Answers' result)."""
        answers = Answers()
        async for d in self.deltas():
            answers.add(d)
        return answers.result()

    async def close(self) -> None:
        """Ends the remote generator (aborting decoding if it still runs) and frees the slot."""
        if self._closed:
            return
        self._closed = True
        try:
            await _release(self._it)
        finally:
            self._router.release(self._lease)


def stream_response(gen: Generation, frames: AsyncGenerator[str, None],
                    error_frame: Callable[[XinferenceError], str], media_type: str) -> StreamingResponse:
    """Sends `frames` (made from `gen`'s deltas); an error after the headers went out
    becomes a last frame (`error_frame`); the stream is closed however the body ends,
    the client going away included."""

    async def body() -> AsyncIterator[str]:
        try:
            async for frame in frames:
                yield frame
        except XinferenceError as e:
            yield error_frame(e)
        except Exception as e:  # never a stream cut short without a word
            if unreachable(e):
                logger.warning("a stream lost its replica: %s", e)
                yield error_frame(XinferenceError(f"The model replica went away: {e}"))
            else:
                yield error_frame(unexpected(e, "a stream failed mid-way"))
        finally:
            try:
                await frames.aclose()
            finally:
                await gen.close()

    return StreamingResponse(body(), media_type=media_type,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class LLMServing:
    def __init__(self, router: ReplicaRouter):
        self.router = router

    async def chat(self, req: ChatCompletionRequest, http: Request):
        return await self._serve(_Shape("chat", req.logprobs), req, req.plain_messages(),
                                 req.chat_template_kwargs, http)

    async def completion(self, req: CompletionRequest, http: Request):
        shape = _Shape("completion", req.logprobs is not None)
        return await self._serve(shape, req, req.prompt, None, http)

    async def open(self, job: GenerationJob, http: Request) -> Generation:
        """Starts `job` on a replica; gives up (and frees the replica) if the client
        leaves first. The caller must `close()` what it gets."""
        started = time.perf_counter_ns()
        lease, (it, first) = await _unless_disconnected(http, self._open_stream(job.model, job.args(), job.prefix()))
        return Generation(self.router, lease, it, first, started, job.choices())

    async def collect(self, job: GenerationJob, http: Request) -> "tuple[Dict[str, Any], Generation]":
        """The whole answer, read as a stream so that its deltas are timed; returns it
        and the closed Generation (for its timings)."""
        gen = await self.open(job, http)
        try:
            return await _unless_disconnected(http, gen.drain()), gen
        finally:
            await gen.close()

    async def complete(self, job: GenerationJob) -> Dict[str, Any]:
        """The whole answer in one call to a replica (no timings)."""
        args = job.args()
        result = await self.router.call(
            job.model, lambda lease: lease.replica.ref.complete(*_for_adapter(args, job.model, lease)),
            job.prefix())
        req = current()
        if req is not None:
            req.add_usage(result)
        return result

    async def _serve(self, shape: _Shape, req: SamplingRequest, payload: Any,
                     template_kwargs: Optional[Dict[str, Any]], http: Request):
        if req.request_id:
            use_request_id(req.request_id)
        tracked = current()
        if tracked is not None and req.user:
            tracked.end_user = req.user
        rid = f"{shape.prefix}-{uuid.uuid4().hex}"
        created = int(time.time())
        job = GenerationJob(req.model, shape.kind, payload, req.sampling(), template_kwargs)
        if not req.stream:
            result = await _unless_disconnected(http, self.complete(job))
            if shape.kind == "completion" and getattr(req, "echo", False):
                prompts = job.prompts()
                for choice in result["choices"]:
                    choice["text"] = prompts[choice["index"] // job.n] + choice["text"]
            return JSONResponse(shape.whole(rid, req.model, created, result))
        gen = await self.open(job, http)
        frames = self._sse_frames(shape, req, job, gen, rid, created)
        return stream_response(gen, frames, _sse_error, "text/event-stream")

    async def _open_stream(self, model: str, args: tuple,
                           prefix: Sequence[bytes]) -> "tuple[Lease, tuple[Any, Optional[Dict[str, Any]]]]":
        """Starts a stream on a replica and reads its first delta, so that a bad request
        (prompt too long, bad messages) is a plain HTTP error rather than an SSE one, and
        a replica lost before its first delta is replaced by another. Returns the held
        lease, the remote iterator and the first delta."""

        async def start(lease: Lease) -> "tuple[Any, Optional[Dict[str, Any]]]":
            it = await lease.replica.ref.stream(*_for_adapter(args, model, lease))
            try:
                return it, await it.__anext__()
            except StopAsyncIteration:
                return it, None
            except BaseException:  # including cancellation: end the remote stream
                await _release(it)
                raise

        return await self.router.open(model, start, prefix)

    @staticmethod
    async def _sse_frames(shape: _Shape, req: SamplingRequest, job: GenerationJob, gen: Generation,
                          rid: str, created: int) -> AsyncGenerator[str, None]:
        for index in range(job.choices()):
            if shape.kind == "chat":
                head = shape.chunks(rid, req.model, created, {"text": "", "index": index})[0]
                head["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                yield _sse(head)
            elif getattr(req, "echo", False):
                prompt = job.prompts()[index // job.n]
                yield _sse(shape.chunks(rid, req.model, created, {"text": prompt, "index": index})[0])
        async for delta in gen.deltas():
            for chunk in shape.chunks(rid, req.model, created, delta):
                yield _sse(chunk)
        if req.include_usage and gen.finished:
            tail = {"id": rid, "object": shape.object, "created": created, "model": req.model,
                    "choices": [], "usage": _usage(gen.usage)}
            yield _sse(tail)
        yield "data: [DONE]\n\n"
