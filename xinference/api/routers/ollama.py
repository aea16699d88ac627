"""Ollama-compatible endpoints (/api/*), next to the OpenAI ones on the same port."""

from types import MappingProxyType
from typing import Any, Callable, Coroutine

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from ... import __version__
from ..json_response import FastJSONResponse
from ..protocol.ollama import (
    OLLAMA_API_VERSION,
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaModelRequest,
)

router = APIRouter(tags=["Ollama"])


def _serving(request: Request):
    return request.app.state.ollama


def _models(request: Request):
    return request.app.state.ollama_models


@router.head("/", include_in_schema=False)
async def heartbeat():
    # the `ollama` CLI's "is the server up?" (GET / stays with the web UI)
    return Response(status_code=200)


@router.get("/api/version", summary="The Ollama API version this server follows")
async def version():
    return {"version": OLLAMA_API_VERSION, "xinference_version": __version__}


@router.post("/api/chat", summary="Ollama: chat (streams NDJSON unless stream is false)")
async def chat(body: OllamaChatRequest, request: Request):
    return await _serving(request).chat(body, request)


@router.post("/api/generate", summary="Ollama: complete a prompt")
async def generate(body: OllamaGenerateRequest, request: Request):
    return await _serving(request).generate(body, request)


@router.post("/api/embed", summary="Ollama: embeddings of one or more inputs")
async def embed(body: OllamaEmbedRequest, request: Request):
    # not FastAPI's encoder, which would walk every float of every vector
    return FastJSONResponse(await _serving(request).embed(body, request))


@router.post("/api/embeddings", summary="Ollama (older API): the embedding of one prompt")
async def embeddings(body: OllamaEmbeddingsRequest, request: Request):
    return FastJSONResponse(await _serving(request).embeddings(body, request))


@router.get("/api/tags", summary="Ollama: the cluster's models")
async def tags(request: Request):
    return await _models(request).tags()


@router.get("/api/ps", summary="Ollama: the models loaded and ready")
async def ps(request: Request):
    return await _models(request).ps()


@router.post("/api/show", summary="Ollama: details of a model")
async def show(body: OllamaModelRequest, request: Request):
    return await _models(request).show(body)


@router.post("/api/pull", summary="Ollama: launch a builtin model, streaming its progress")
async def pull(body: OllamaModelRequest, request: Request):
    return await _models(request).pull(body, request)


@router.delete("/api/delete", summary="Ollama: terminate a model")
async def delete(body: OllamaModelRequest, request: Request):
    await _models(request).delete(body)
    return Response(status_code=200)


# Ollama's endpoints that build, copy or upload models, which have no meaning on a
# cluster that serves a catalogue: a 501 that says so (and its other paths, called
# with the wrong method, a 405 from routing)
UNSUPPORTED = MappingProxyType({"/api/create": ["POST"], "/api/copy": ["POST"], "/api/push": ["POST"],
               "/api/blobs/{digest}": ["HEAD", "POST"]})


def _unsupported(path: str) -> Callable[[], Coroutine[Any, Any, JSONResponse]]:
    name = path.split("/{")[0]

    async def unsupported() -> JSONResponse:
        return JSONResponse({"error": f"{name} is not supported by this server; models come "
                                      "from the cluster's catalogue: POST /api/pull launches one."},
                            status_code=501)

    return unsupported


for _path, _methods in UNSUPPORTED.items():
    router.add_api_route(_path, _unsupported(_path), methods=_methods, include_in_schema=False)
