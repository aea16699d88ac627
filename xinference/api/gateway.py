"""The one way from an API request to a replica and back.

Every front end (OpenAI, Ollama, embeddings and rerank) goes through `Gateway`: it
holds a replica of the model (`ReplicaBalancer`: load, prefix affinity, failover),
applies the LoRA adapter the request's `model` named, gives up when the client goes
away (which aborts decoding), and either collects the whole answer in one call or
opens a stream. What is the front end's own is a `FrontEnd`: how a delta becomes its
frames, how the stream ends, how an error is framed, and how a whole answer looks.
"""

import asyncio
import logging
import time
from typing import (
    Any,
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..answers import USAGE_KEYS
from ..core.remote import GenerationArgs, RemoteStream, unreachable
from ..errors import InvalidRequestError, XinferenceError
from .coalesce import CallCoalescer
from .errors import ClientGone, unexpected
from .inflight import abortable, current
from .prefix_affinity import prefix_keys, prompt_text
from .replicas import Lease, ModelFacts, ReplicaBalancer

logger = logging.getLogger(__name__)

T = TypeVar("T")


class GenerationJob(NamedTuple):
    """One generation request, whichever API it came through."""

    model: str  # as the request named it: a model uid, adapter name or model name
    kind: str  # "chat" (payload: messages) or "completion" (payload: a prompt)
    payload: Any
    params: Dict[str, Any]  # SamplingParams fields
    template_kwargs: Optional[Dict[str, Any]] = None

    def args(self) -> GenerationArgs:
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


class Timings(NamedTuple):
    """When a generation started here, and when its first and last tokens came, in
    perf_counter nanoseconds of this process: Ollama's timing fields."""

    started_ns: int
    first_ns: int
    last_ns: int


class Generation:
    """A stream open on a replica, holding a slot of it until `close()`.

    The first delta was read when it opened, so a bad request failed as a plain HTTP
    error. It keeps when the deltas came for `timings`.
    """

    def __init__(self, balancer: ReplicaBalancer, lease: Lease, stream: RemoteStream,
                 first: Optional[Dict[str, Any]], started_ns: int, choices: int = 1):
        self._balancer = balancer
        self._lease = lease
        self._stream = stream
        self.first = first
        self.last = first
        self.choices = choices
        self.finished = 0  # choices whose last delta came
        self.usage = dict.fromkeys(USAGE_KEYS, 0)  # of the finished choices
        self._started_ns = started_ns
        self._first_ns = self._last_ns = time.perf_counter_ns()
        self._closed = False
        self._req = current()  # told about each delta (metrics, usage); None outside a request
        if self._req is not None:
            self._req.streamed = True
            if first is None:
                self._req.completed = True
            else:
                self._req.first_delta()
                self._req.delta(first)

    @property
    def timings(self) -> Timings:
        return Timings(self._started_ns, self._first_ns, self._last_ns)

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
                    self._balancer.mark_down(self._lease, e)
                raise
            self.last, self._last_ns = delta, time.perf_counter_ns()
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
            return await self._stream.__anext__()
        # a task, so that an abort can cancel it (cancelling the remote call ends decoding)
        call = asyncio.ensure_future(self._stream.__anext__())
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

    async def close(self) -> None:
        """Ends the remote generator (aborting decoding if it still runs) and frees the slot."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.close()
        finally:
            self._balancer.release(self._lease)


class FrontEnd:
    """How one API shapes a generation: the template every front end fills in."""

    media_type = "text/event-stream"

    def head(self) -> Iterable[str]:
        """Frames before the first delta."""
        return ()

    def frames(self, delta: Dict[str, Any]) -> Iterable[str]:
        raise NotImplementedError

    def tail(self, gen: Generation) -> Iterable[str]:
        """Frames after the last delta."""
        return ()

    def error(self, e: XinferenceError) -> str:
        """The last frame of a stream that failed after its headers went out."""
        raise NotImplementedError

    def whole(self, result: Dict[str, Any], timings: Timings) -> Dict[str, Any]:
        """The body of a non-streamed answer, from answers.Answers' result."""
        raise NotImplementedError


def stream_response(gen: Generation, front: FrontEnd) -> StreamingResponse:
    """Sends the front end's frames for `gen`'s deltas; an error after the headers went
    out becomes a last frame; the stream is closed however the body ends, the client
    going away included."""

    async def frames() -> AsyncGenerator[str, None]:
        for frame in front.head():
            yield frame
        async for delta in gen.deltas():
            for frame in front.frames(delta):
                yield frame
        for frame in front.tail(gen):
            yield frame

    async def body() -> AsyncIterator[str]:
        out = frames()
        try:
            async for frame in out:
                yield frame
        except XinferenceError as e:
            yield front.error(e)
        except Exception as e:  # never a stream cut short without a word
            if unreachable(e):
                logger.warning("a stream lost its replica: %s", e)
                yield front.error(XinferenceError(f"The model replica went away: {e}"))
            else:
                yield front.error(unexpected(e, "a stream failed mid-way"))
        finally:
            try:
                await out.aclose()
            finally:
                await gen.close()

    return StreamingResponse(body(), media_type=front.media_type,
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def unless_disconnected(http: Request, coro: Coroutine[Any, Any, T]) -> T:
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


def _for_adapter(args: GenerationArgs, model: str, lease: Lease) -> GenerationArgs:
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


class Gateway:
    def __init__(self, balancer: ReplicaBalancer):
        self.balancer = balancer
        self._embeds = CallCoalescer("embed_many")

    async def facts(self, model: str) -> ModelFacts:
        """What the front ends check a request against (abilities, context), as cached
        with the model's replicas."""
        return await self.balancer.facts(model)

    async def serve(self, front: FrontEnd, job: GenerationJob, http: Request, stream: bool) -> Response:
        if not stream:
            result, timings = await self.collect(job, http)
            return JSONResponse(front.whole(result, timings))
        return stream_response(await self.open(job, http), front)

    async def open(self, job: GenerationJob, http: Request) -> Generation:
        """Starts `job` on a replica and reads its first delta, so that a bad request
        (prompt too long, bad messages) is a plain HTTP error rather than a stream's
        error frame, and a replica lost before its first delta is replaced by another.
        Gives up (and frees the replica) if the client leaves first. The caller must
        `close()` what it gets."""
        started = time.perf_counter_ns()
        args = job.args()

        async def start(lease: Lease) -> Tuple[RemoteStream, Optional[Dict[str, Any]]]:
            stream = await lease.handle.stream(_for_adapter(args, job.model, lease))
            try:
                return stream, await stream.__anext__()
            except StopAsyncIteration:
                return stream, None
            except BaseException:  # including cancellation: end the remote stream
                await stream.close()
                raise

        lease, (stream, first) = await unless_disconnected(
            http, self.balancer.open(job.model, start, job.prefix()))
        return Generation(self.balancer, lease, stream, first, started, job.choices())

    async def collect(self, job: GenerationJob, http: Request) -> Tuple[Dict[str, Any], Timings]:
        """The whole answer in one call to a replica, and its timings: the replica says
        how long after the call its first and last tokens came."""
        args = job.args()
        started = time.perf_counter_ns()
        result = await self.call(
            job.model, lambda lease: lease.handle.complete(_for_adapter(args, job.model, lease)),
            http, job.prefix())
        ended = time.perf_counter_ns()
        offsets = result.pop("timings", None) or {}
        first = min(ended, started + int(offsets.get("first_ns", ended - started)))
        last = min(ended, max(first, started + int(offsets.get("last_ns", ended - started))))
        req = current()
        if req is not None:
            req.first_delta(at_ns=first)
            req.add_usage(result)
        return result, Timings(started, first, last)

    async def call(self, model: str, fn: Callable[[Lease], Coroutine[Any, Any, T]], http: Request,
                   prefix: Sequence[bytes] = ()) -> T:
        """`fn` on a replica of `model` (another if that one cannot be reached), given up
        if the client leaves first."""
        return await unless_disconnected(http, self.balancer.call(model, fn, prefix))

    async def embed(self, model: str, http: Request, *args: Any) -> Dict[str, Any]:
        """One embedding call; concurrent ones to a replica go to it as one call."""

        async def one(lease: Lease) -> Dict[str, Any]:
            return await self._embeds.call(lease.replica, *args)

        return await self.call(model, one, http)

