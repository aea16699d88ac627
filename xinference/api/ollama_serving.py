"""Ollama's inference routes: /api/chat, /api/generate, /api/embed, /api/embeddings.

Nothing here talks to a replica itself: a request becomes the same `GenerationJob`
an OpenAI request becomes and runs through the `Gateway` (routing, failover, LoRA
adapters, disconnects abort decoding), or through `RetrievalServing` for embeddings;
what is Ollama's is the request's options and the answer's shape (`OllamaFront`):
NDJSON lines, the last one `done` with Ollama's timing fields.
"""

import time
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Union

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ..core.supervisor_api import SupervisorAPI
from ..errors import InvalidRequestError, ModelNotFoundError, XinferenceError
from .gateway import FrontEnd, Gateway, Generation, GenerationJob, Timings
from .protocol.ollama import (
    NDJSON,
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    done_reply,
    format_schema,
    model_uid,
    ndjson,
    reply,
    sampling_params,
    timing_fields,
)
from .protocol.retrieval import EmbeddingRequest
from .replicas import ModelFacts
from .retrieval_serving import RetrievalServing

OllamaRequest = Union[OllamaChatRequest, OllamaGenerateRequest]
THINKING_ABILITIES = frozenset({"reasoning", "hybrid"})


@contextmanager
def named_model(name: str) -> Iterator[None]:
    """Says "model 'x' not found" in Ollama's words (the name as the client sent it);
    a model whose launch failed keeps the supervisor's account of why."""
    try:
        yield
    except ModelNotFoundError as e:
        message = e.message if " is not running:" in e.message else (
            f"model '{name}' not found; pull it first (POST /api/pull) or launch it")
        raise ModelNotFoundError(message, param="model", code=e.code) from None


def _timing_fields(t: Timings, usage: Dict[str, Any]) -> Dict[str, int]:
    return timing_fields(t.started_ns, t.first_ns, t.last_ns, time.perf_counter_ns(),
                         int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


class OllamaFront(FrontEnd):
    """/api/chat's and /api/generate's answers: NDJSON lines, or one `done` reply."""

    media_type = NDJSON

    def __init__(self, kind: str, model: str):
        self.kind = kind
        self.model = model

    def frames(self, delta: Dict[str, Any]) -> Iterable[str]:
        if delta["text"] or delta.get("tool_calls"):
            yield ndjson(reply(self.kind, self.model, delta["text"], delta.get("tool_calls")))

    def tail(self, gen: Generation) -> Iterable[str]:
        reason = (gen.last or {}).get("finish_reason") or "stop"
        yield ndjson(done_reply(self.kind, self.model, "", reason, _timing_fields(gen.timings, gen.usage)))

    def error(self, e: XinferenceError) -> str:
        return ndjson({"error": e.message})

    def whole(self, result: Dict[str, Any], timings: Timings) -> Dict[str, Any]:
        answer: Dict[str, Any] = result["choices"][0] if result["choices"] else {"text": ""}
        return done_reply(self.kind, self.model, answer["text"], answer.get("finish_reason") or "stop",
                          _timing_fields(timings, result), answer.get("tool_calls"))


class OllamaServing:
    def __init__(self, gateway: Gateway, retrieval: RetrievalServing, supervisor: SupervisorAPI):
        self._gateway = gateway
        self._retrieval = retrieval
        self._supervisor = supervisor

    async def _facts(self, uid: str, name: str) -> ModelFacts:
        with named_model(name):
            return await self._gateway.facts(uid)

    # ---- generation ------------------------------------------------------------------

    async def chat(self, req: OllamaChatRequest, http: Request):
        uid = model_uid(req.model)
        if not req.messages:  # Ollama's way to load a model ahead of use
            return await self._load_only("chat", req, uid)
        facts = None
        if req.think is not None or req.has_images or (req.options and req.options.num_ctx):
            facts = await self._facts(uid, req.model)
            self._check_abilities(req, facts, req.has_images)
        messages = req.plain_messages()
        if req.has_images:
            messages = _with_images(messages, req)
        job = GenerationJob(uid, "chat", messages, self._params(req), _template_kwargs(req, facts))
        return await self._answer("chat", req, job, http)

    async def generate(self, req: OllamaGenerateRequest, http: Request):
        uid = model_uid(req.model)
        if not req.prompt:
            return await self._load_only("generate", req, uid)
        facts = await self._facts(uid, req.model)
        self._check_abilities(req, facts, bool(req.images))
        if req.raw or "chat" not in facts.abilities:
            # no template: the prompt as it is (Ollama's raw mode, or a base model)
            job = GenerationJob(uid, "completion", req.prompt, self._params(req))
        else:
            messages: List[Dict[str, Any]] = [{"role": "system", "content": req.system}] if req.system else []
            messages.append({"role": "user", "content": req.prompt})
            if req.images:
                messages[-1]["content"] = _image_parts(req.prompt, req.images)
            job = GenerationJob(uid, "chat", messages, self._params(req), _template_kwargs(req, facts))
        return await self._answer("generate", req, job, http)

    async def _load_only(self, kind: str, req: OllamaRequest, uid: str) -> JSONResponse:
        # Models here are loaded while they run and shared by every client: loading is
        # a no-op and keep_alive 0 unloads nothing (DELETE /api/delete does).
        with named_model(req.model):
            await self._supervisor.describe_model(uid)  # 404 for a model that is not there
        return JSONResponse(done_reply(kind, req.model, "", "unload" if req.unloads else "load"))

    @staticmethod
    def _check_abilities(req: OllamaRequest, facts: ModelFacts, images: bool) -> None:
        abilities = set(facts.abilities)
        if images and "vision" not in abilities:
            raise InvalidRequestError(f"model '{req.model}' does not support images (no vision ability).",
                                      param="images")
        if req.wants_thinking and not abilities & THINKING_ABILITIES:
            raise InvalidRequestError(f"model '{req.model}' does not support thinking.", param="think")
        num_ctx = req.options.num_ctx if req.options else None
        context = facts.context_length
        if num_ctx and context and num_ctx > context:
            raise InvalidRequestError(
                f"num_ctx {num_ctx} is more than the {context} tokens of context model "
                f"'{req.model}' was launched with; lower num_ctx or launch it with a larger n_ctx.",
                param="num_ctx")

    @staticmethod
    def _params(req: OllamaRequest) -> Dict[str, Any]:
        params = sampling_params(req.options)
        params["json_schema"] = format_schema(req.format)
        if isinstance(req, OllamaChatRequest):
            params["tool_use"] = req.tool_use()
        return params

    async def _answer(self, kind: str, req: OllamaRequest, job: GenerationJob, http: Request) -> Response:
        with named_model(req.model):
            return await self._gateway.serve(OllamaFront(kind, req.model), job, http, req.streaming)

    # ---- embeddings ------------------------------------------------------------------

    async def embed(self, req: OllamaEmbedRequest, http: Request) -> Dict[str, Any]:
        started = time.perf_counter_ns()
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        vectors: List[Any] = []
        tokens = 0
        if texts:
            truncate = True if req.truncate is None else req.truncate  # Ollama's default
            out = await self._embeddings(req.model, texts, truncate, req.dimensions, http)
            vectors = [row["embedding"] for row in out["data"]]
            tokens = int(out["usage"]["prompt_tokens"])
        ended = time.perf_counter_ns()
        return {"model": req.model, "embeddings": vectors, "total_duration": ended - started,
                "load_duration": 0, "prompt_eval_count": tokens}

    async def embeddings(self, req: OllamaEmbeddingsRequest, http: Request) -> Dict[str, Any]:
        if not req.prompt:
            return {"embedding": []}
        out = await self._embeddings(req.model, [req.prompt], True, None, http)
        return {"embedding": out["data"][0]["embedding"]}

    async def _embeddings(self, name: str, texts: List[Any], truncate: bool,
                          dimensions: Optional[int], http: Request) -> Dict[str, Any]:
        try:
            request = EmbeddingRequest(model=model_uid(name), input=list(texts), truncate=truncate,
                                       dimensions=dimensions)
        except ValidationError as e:
            raise InvalidRequestError(f"Invalid input: {e.errors()[0]['msg']}", param="input") from None
        with named_model(name):
            return await self._retrieval.embeddings(request, http)


def _template_kwargs(req: OllamaRequest, facts: Optional[ModelFacts]) -> Optional[Dict[str, Any]]:
    """Thinking on or off, for a model whose chat template can switch it."""
    if req.think is None or facts is None or not set(facts.abilities) & THINKING_ABILITIES:
        return None
    return {"enable_thinking": req.wants_thinking}


def _image_parts(text: str, images: List[str]) -> List[Dict[str, Any]]:
    """OpenAI content parts (what a vision model's chat path takes) for Ollama's text
    plus base64 images."""
    parts: List[Dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": f"data:image/*;base64,{b64}"}} for b64 in images]
    return parts


def _with_images(messages: List[Dict[str, Any]], req: OllamaChatRequest) -> List[Dict[str, Any]]:
    return [{**m, "content": _image_parts(m["content"], src.images)} if src.images else m
            for m, src in zip(messages, req.messages)]
