"""Embeddings (OpenAI shape) and rerank (Xinference shape)."""

from fastapi import APIRouter, Request

from ..json_response import FastJSONResponse
from ..protocol.retrieval import EmbeddingRequest, RerankRequest

router = APIRouter(tags=["Retrieval"])


@router.post("/v1/embeddings", summary="Create embeddings")
async def embeddings(body: EmbeddingRequest, request: Request):
    # not FastAPI's encoder, which would walk every float of every vector
    return FastJSONResponse(await request.app.state.retrieval.embeddings(body, request))


@router.post("/v1/rerank", summary="Rerank documents for a query")
async def rerank(body: RerankRequest, request: Request):
    return await request.app.state.retrieval.rerank(body, request)
