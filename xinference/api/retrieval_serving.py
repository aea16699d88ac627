"""Embeddings and rerank: validate -> ask a replica (dynamically batched there) -> shape."""

import base64
from array import array
from typing import Any, Dict, List

from fastapi import Request

from ..errors import InvalidRequestError
from .gateway import Gateway
from .inflight import note_usage
from .protocol.retrieval import EmbeddingRequest, RerankRequest
from .replicas import Lease


class RetrievalServing:
    def __init__(self, gateway: Gateway):
        self._gateway = gateway

    async def embeddings(self, req: EmbeddingRequest, http: Request) -> Dict[str, Any]:
        try:
            inputs = req.inputs()
        except ValueError as e:
            raise InvalidRequestError(str(e), param="input") from None
        out = await self._gateway.embed(req.model, http, inputs, req.truncate, req.dimensions)
        data = out["data"]
        width = out["dims"] * 4
        rows: List[Dict[str, Any]] = []
        for i in range(len(data) // width):
            chunk = data[i * width:(i + 1) * width]
            # float32, little-endian: what OpenAI's base64 encoding carries
            vector: Any = (base64.b64encode(chunk).decode("ascii") if req.encoding_format == "base64"
                           else array("f", chunk).tolist())
            rows.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = int(out["prompt_tokens"])
        note_usage(prompt_tokens=tokens)
        return {"object": "list", "data": rows, "model": req.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def rerank(self, req: RerankRequest, http: Request) -> Dict[str, Any]:
        return_documents = True if req.return_documents is None else req.return_documents
        args = (req.query, req.documents, req.top_n, return_documents, bool(req.return_len))

        async def rerank(lease: Lease) -> Dict[str, Any]:
            return await lease.handle.rerank(*args)

        out = await self._gateway.call(req.model, rerank, http)
        note_usage(prompt_tokens=((out.get("meta") or {}).get("tokens") or {}).get("input_tokens", 0))
        return out
