"""A loaded rerank model: a sentence-transformers `CrossEncoder`, dynamically batched.

A cross-encoder reads the query and one document together and gives the pair one
score; a request scores every (query, document) pair and returns the documents sorted
by score. The scores are what `CrossEncoder.predict` gives: the logits through the
activation the model was saved with, or a Sigmoid for a one-label model that names
none (bge-reranker: scores in 0..1, as Xinference users expect).

Model calls run one at a time in one worker thread (model/batching.py), never on the
event loop; concurrent requests share forward passes. The response has Xinference's
shape (`xinference.types.Rerank` upstream):

    {"id": "<uuid>",
     "results": [{"index": 2, "relevance_score": 0.93, "document": {"text": "..."} | None}],
     "meta": {"api_version": None, "billed_units": None,
              "tokens": {"input_tokens": n, "output_tokens": n} | None, "warnings": None}}

sentence-transformers and torch are imported only in `load()`.
"""

import asyncio
import json
import logging
import os
import uuid
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from ...constants import MAX_RERANK_DOCUMENTS, MAX_TEXT_CHARS, trust_remote_code_allowed
from ...errors import InvalidRequestError
from ..batching import DynamicBatcher
from ..launch_options import DEVICE, Float, Int, check_options
from ..model_type import ServedModel
from ..remote_code import check_allowed, load_error
from .family import RerankFamily

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 32
DEFAULT_BATCH_WAIT_S = 0.002
# model types whose position ids start after the padding index (pad_token_id + 1)
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert")


@dataclass
class _Job:
    query: str
    documents: List[str]
    return_len: bool


LAUNCH_OPTIONS = MappingProxyType({
    "device": DEVICE,
    # pairs of one forward pass: a request with more documents runs as several
    "max_batch": Int(1, 4096),
    # tokens of one (query, document) pair; the model's position embeddings cap it at load
    "max_length": Int(1, 1 << 20),
    "batch_wait_ms": Float(0, 1000),
})


class RerankModel(ServedModel):
    launch_kwargs: ClassVar[Tuple[str, ...]] = tuple(LAUNCH_OPTIONS)

    def __init__(self, model_path: str, family: RerankFamily, **kwargs: Any):
        kwargs = check_options("Rerank models do not take", kwargs, LAUNCH_OPTIONS)
        self.model_path = model_path
        self.family = family
        self.device: str = kwargs.get("device") or "cpu"
        self.max_batch: int = kwargs.get("max_batch", DEFAULT_MAX_BATCH)
        self._max_length_override: Optional[int] = kwargs.get("max_length")
        self.max_tokens: int = self._max_length_override or family.max_tokens
        self._batch_wait_s = float(kwargs.get("batch_wait_ms", DEFAULT_BATCH_WAIT_S * 1000)) / 1000
        self._model: Any = None
        self._prompt: Optional[str] = None
        self._batcher: Optional[DynamicBatcher] = None

    # ---- loading ----------------------------------------------------------------------

    async def load(self) -> None:
        await asyncio.to_thread(self._load_sync)
        self._batcher = DynamicBatcher(
            self._run,
            max_batch=self.max_batch,
            max_wait_s=self._batch_wait_s,
            size=lambda job: len(job.documents),
            name="rerank",
        )

    def _load_sync(self) -> None:
        _check_folder(self.model_path)
        import torch
        from sentence_transformers import CrossEncoder

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidRequestError(
                f"device={self.device!r}, but this worker has no CUDA device.", param="device"
            )
        check_allowed(self.family.model_name, self.family.trust_remote_code)
        try:
            model = CrossEncoder(
                self.model_path,
                device=self.device,
                max_length=self.max_tokens,
                trust_remote_code=trust_remote_code_allowed(),
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError, AttributeError, TypeError, ImportError) as e:
            raise load_error(
                self.family.model_name,
                f"sentence-transformers could not load {self.model_path} as a cross-encoder", e,
            ) from None
        if model.num_labels != 1:
            raise InvalidRequestError(
                f"{self.model_path} is a classifier with {model.num_labels} labels; a reranker "
                "gives one score per (query, document) pair (num_labels=1).",
                param="model_path",
            )
        model.eval()
        self._fit_max_length(model)
        self.max_tokens = int(model.max_seq_length)
        # predict() prepends the model's default prompt, if it saved one; count it too.
        name = model.default_prompt_name
        self._prompt = model.prompts.get(name) if name else None
        self._model = model

    def _fit_max_length(self, model: Any) -> None:
        """Keeps the pair length within the position embeddings the model has."""
        config = model.config
        limit = getattr(config, "max_position_embeddings", None)
        if not isinstance(limit, int):
            return
        if getattr(config, "model_type", "") in _OFFSET_POSITIONS:
            limit -= (getattr(config, "pad_token_id", None) or 0) + 1
        if model.max_seq_length <= limit:
            return
        if self._max_length_override:
            raise InvalidRequestError(
                f"max_length={self._max_length_override}, but {self.model_path} has position "
                f"embeddings for {limit} tokens.",
                param="max_length",
            )
        logger.info("Rerank model %s: pairs capped at %d tokens (family says %d).",
                    self.family.model_name, limit, model.max_seq_length)
        model.max_seq_length = limit

    # ---- requests ---------------------------------------------------------------------

    async def rerank(
        self,
        query: str,
        documents: List[str],
        top_n: Optional[int] = None,
        return_documents: bool = False,
        return_len: bool = False,
    ) -> Dict[str, Any]:
        """Scores every (query, document) pair; results sorted by relevance_score, highest
        first (ties keep request order), cut to top_n."""
        _validate(query, documents, top_n)
        assert self._batcher is not None, "rerank() before load()"
        # More documents than one forward pass takes run as several passes, one after
        # another, so that requests arriving meanwhile get their turn in between.
        scores: List[float] = []
        tokens: Optional[int] = 0 if return_len else None
        for start in range(0, len(documents), self.max_batch):
            part = list(documents[start:start + self.max_batch])
            got, counted = await self._batcher.submit(_Job(query, part, bool(return_len)))
            scores += got
            if tokens is not None:
                tokens += counted or 0
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        if top_n is not None:
            order = order[:top_n]
        results = [
            {
                "index": i,
                "relevance_score": scores[i],
                "document": {"text": documents[i]} if return_documents else None,
            }
            for i in order
        ]
        # As Xinference does: with return_len, output_tokens repeats input_tokens (its
        # comment: a rerank model's output is the scores of its input); without, null.
        # The other keys exist for Cohere compatibility and are always null.
        meta = {
            "api_version": None,
            "billed_units": None,
            "tokens": {"input_tokens": tokens, "output_tokens": tokens} if return_len else None,
            "warnings": None,
        }
        return {"id": str(uuid.uuid4()), "results": results, "meta": meta}

    def stats(self) -> Dict[str, Any]:
        return self._batcher.stats() if self._batcher is not None else {}

    async def close(self) -> None:
        """Fails what is still queued, waits for the running call, drops the model."""
        if self._batcher is not None:
            await self._batcher.close()
            self._batcher = None
        self._model = None

    # ---- the model thread -------------------------------------------------------------

    def _run(self, jobs: List[_Job]) -> List[Tuple[List[float], Optional[int]]]:
        """One predict call for the pairs of every job; each job gets its scores back."""
        pairs = [(job.query, doc) for job in jobs for doc in job.documents]
        # CrossEncoder truncates each pair to max_seq_length tokens ("longest_first": the
        # longer of query and document loses tokens first), and rerankers score truncated
        # pairs as they are: a long document is judged on its beginning.
        scores = self._model.predict(
            pairs, batch_size=self.max_batch, show_progress_bar=False, convert_to_numpy=True
        ).tolist()
        out: List[Tuple[List[float], Optional[int]]] = []
        start = 0
        for job in jobs:
            end = start + len(job.documents)
            tokens = self._count_tokens(pairs[start:end]) if job.return_len else None
            out.append(([float(s) for s in scores[start:end]], tokens))
            start = end
        return out

    def _count_tokens(self, pairs: List[Tuple[str, str]]) -> int:
        """Tokens of the pairs as the model sees them: the CrossEncoder's own preprocessing
        (special tokens, prompt, truncation), without padding."""
        total = 0
        for i in range(0, len(pairs), self.max_batch):
            features = self._model.preprocess(pairs[i : i + self.max_batch], prompt=self._prompt)
            mask = features.get("attention_mask")
            total += int(mask.sum()) if mask is not None else int(features["input_ids"].numel())
        return total


def _check_folder(path: str) -> None:
    """Tells a cross-encoder folder from other model folders before anything loads:
    an embedding model or a plain LM would otherwise load with a random score head."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise InvalidRequestError(
            f"{path} is not a model folder: it has no config.json.", param="model_path"
        )
    st_file = os.path.join(path, "config_sentence_transformers.json")
    if os.path.isfile(st_file):
        kind = _read_json(st_file).get("model_type")
        if kind == "CrossEncoder":
            return
        if kind:
            raise InvalidRequestError(
                f"{path} is a sentence-transformers {kind}, not a CrossEncoder.", param="model_path"
            )
    architectures = _read_json(config_file).get("architectures") or []
    if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
        found = ", ".join(map(str, architectures)) or "none named"
        raise InvalidRequestError(
            f"{path} is not a cross-encoder: a reranker is a *ForSequenceClassification model "
            f"(architectures in config.json: {found}).",
            param="model_path",
        )


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InvalidRequestError(f"Cannot read {path}: {e}", param="model_path") from None
    return data if isinstance(data, dict) else {}


def _validate(query: Any, documents: Any, top_n: Any) -> None:
    if not isinstance(query, str):
        raise InvalidRequestError(f"query must be a string; got {type(query).__name__}.",
                                  param="query")
    if not query.strip():
        raise InvalidRequestError("query must not be empty.", param="query")
    if not isinstance(documents, (list, tuple)):
        raise InvalidRequestError(
            f"documents must be a list of strings; got {type(documents).__name__}.",
            param="documents",
        )
    if not documents:
        raise InvalidRequestError("documents must not be empty.", param="documents")
    if len(documents) > MAX_RERANK_DOCUMENTS:
        raise InvalidRequestError(
            f"documents has {len(documents)} items; one request may rerank at most "
            f"{MAX_RERANK_DOCUMENTS} (XINFERENCE_MAX_RERANK_DOCUMENTS on the server).",
            param="documents")
    if len(query) > MAX_TEXT_CHARS:
        raise InvalidRequestError(f"query has {len(query)} characters; at most {MAX_TEXT_CHARS} "
                                  "are taken.", param="query")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise InvalidRequestError(
                f"documents[{i}] must be a string; got {type(doc).__name__}.", param="documents"
            )
        if len(doc) > MAX_TEXT_CHARS:
            raise InvalidRequestError(f"documents[{i}] has {len(doc)} characters; at most "
                                      f"{MAX_TEXT_CHARS} are taken.", param="documents")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise InvalidRequestError(f"top_n must be a positive integer; got {top_n!r}.",
                                  param="top_n")
