"""Chat and completion serving: validate -> ask a replica -> shape as OpenAI.

One template for both endpoints; they differ only in how a request becomes a
prompt and how a delta becomes a chunk.
"""

import asyncio
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator, Coroutine, Dict, Optional, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

from ..errors import InvalidRequestError, ModelNotReadyError, XinferenceError
from .errors import ClientGone, error_body
from .protocol.openai import ChatCompletionRequest, CompletionRequest, SamplingRequest
from .replicas import CONNECTION_ERRORS, Lease, ReplicaRouter

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _Shape:
    """How one endpoint names and shapes its responses."""

    def __init__(self, kind: str):
        self.kind = kind
        self.prefix = "chatcmpl" if kind == "chat" else "cmpl"

    def chunk(self, rid: str, model: str, created: int, delta: Dict[str, Any]) -> Dict[str, Any]:
        if self.kind == "chat":
            choice: Dict[str, Any] = {
                "index": 0,
                "delta": {"content": delta["text"]} if delta["text"] or not delta.get("finish_reason") else {},
                "logprobs": None,
                "finish_reason": delta.get("finish_reason"),
            }
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": delta["text"], "logprobs": None,
                      "finish_reason": delta.get("finish_reason")}
            obj = "text_completion"
        return {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}

    def whole(self, rid: str, model: str, created: int, result: Dict[str, Any]) -> Dict[str, Any]:
        if self.kind == "chat":
            choice: Dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": result["text"]},
                "logprobs": None,
                "finish_reason": result["finish_reason"],
            }
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": result["text"], "logprobs": None,
                      "finish_reason": result["finish_reason"]}
            obj = "text_completion"
        return {"id": rid, "object": obj, "created": created, "model": model,
                "choices": [choice], "usage": _usage(result)}


def _usage(delta: Dict[str, Any]) -> Dict[str, Any]:
    p, c = int(delta.get("prompt_tokens", 0)), int(delta.get("completion_tokens", 0))
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": int(delta.get("cached_tokens", 0))}}


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def _unless_disconnected(http: Request, coro: Coroutine[Any, Any, T]) -> T:
    """Runs `coro`, cancelling it (and with it the remote call, which aborts decoding)
    if the HTTP client goes away first."""
    task = asyncio.ensure_future(coro)
    try:
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


class LLMServing:
    def __init__(self, router: ReplicaRouter):
        self.router = router

    async def chat(self, req: ChatCompletionRequest, http: Request):
        return await self._serve(_Shape("chat"), req, req.plain_messages(), req.chat_template_kwargs, http)

    async def completion(self, req: CompletionRequest, http: Request):
        return await self._serve(_Shape("completion"), req, req.prompt, None, http)

    async def _serve(self, shape: _Shape, req: SamplingRequest, payload: Any,
                     template_kwargs: Optional[Dict[str, Any]], http: Request):
        rid = f"{shape.prefix}-{uuid.uuid4().hex}"
        created = int(time.time())
        args = (shape.kind, payload, req.sampling(), template_kwargs)
        if not req.stream:
            result = await _unless_disconnected(http, self._call_with_retry(req.model, args))
            if shape.kind == "completion" and getattr(req, "echo", False):
                result["text"] = payload + result["text"]
            return JSONResponse(shape.whole(rid, req.model, created, result))
        return await self._stream(shape, req, args, rid, created, http)

    async def _call_with_retry(self, model: str, args: tuple) -> Dict[str, Any]:
        # A replica that vanished since we cached it: ask the supervisor again, once
        # per replica we might have tried.
        for attempt in range(3):
            try:
                async with self.router.acquire(model) as lease:
                    return await lease.replica.ref.complete(*_for_adapter(args, model, lease))
            except CONNECTION_ERRORS:
                if attempt == 2:
                    raise ModelNotReadyError(f"No replica of {model} answered; retry shortly.")
        raise AssertionError("unreachable")

    async def _open_stream(self, model: str, args: tuple) -> "tuple[Any, Any, Optional[Dict[str, Any]]]":
        """Starts a stream on a replica and reads its first delta, so that a bad request
        (prompt too long, bad messages) is a plain HTTP error rather than an SSE one.
        Returns the held replica slot, the remote iterator and the first delta."""
        for attempt in range(3):
            acquired = self.router.acquire(model)
            lease = await acquired.__aenter__()
            it: Any = None
            try:
                it = await lease.replica.ref.stream(*_for_adapter(args, model, lease))
                try:
                    first = await it.__anext__()
                except StopAsyncIteration:
                    first = None
                return acquired, it, first
            except BaseException as e:  # including cancellation: release what we hold
                if it is not None:
                    await _release(it)
                await acquired.__aexit__(type(e), e, e.__traceback__)
                if not isinstance(e, CONNECTION_ERRORS):
                    raise
                if attempt == 2:
                    raise ModelNotReadyError(f"No replica of {model} answered; retry shortly.")
        raise AssertionError("unreachable")

    async def _stream(self, shape: _Shape, req: SamplingRequest, args: tuple, rid: str, created: int,
                      http: Request):
        acquired, it, first = await _unless_disconnected(http, self._open_stream(req.model, args))

        async def body() -> AsyncIterator[str]:
            last = first
            try:
                if shape.kind == "chat":
                    head = shape.chunk(rid, req.model, created, {"text": ""})
                    head["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                    yield _sse(head)
                if getattr(req, "echo", False):
                    yield _sse(shape.chunk(rid, req.model, created, {"text": args[1]}))
                if first is not None:
                    yield _sse(shape.chunk(rid, req.model, created, first))
                    if not first.get("finish_reason"):
                        async for delta in it:
                            last = delta
                            yield _sse(shape.chunk(rid, req.model, created, delta))
                if req.include_usage and last is not None:
                    tail = {"id": rid, "object": shape.chunk(rid, req.model, created, last)["object"],
                            "created": created, "model": req.model, "choices": [],
                            "usage": _usage(last)}
                    yield _sse(tail)
                yield "data: [DONE]\n\n"
            except XinferenceError as e:
                yield _sse(error_body(e.message, e.error_type, e.param, e.code))
            except CONNECTION_ERRORS as e:
                logger.warning("stream %s lost its replica: %s", rid, e)
                yield _sse(error_body(f"The model replica went away: {e}", "server_error"))
            finally:
                # Client gone or stream over: end the remote generator now, which
                # aborts decoding in the engine.
                await _release(it)
                await acquired.__aexit__(None, None, None)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
