"""A loaded embedding model (sentence-transformers), dynamically batched.

Each request is tokenized once, in the model thread: the token counts decide the
length check and the usage, and the same ids feed the forward pass. Concurrent
requests share forward passes (model/batching.py). Vectors travel back as float32
bytes, so the REST layer needs no numpy.

sentence-transformers and torch are imported only in `load()`.
"""

import asyncio
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple, Union

from ...constants import MAX_EMBEDDING_INPUTS, MAX_TEXT_CHARS, trust_remote_code_allowed
from ...errors import InvalidRequestError
from ..batching import DynamicBatcher
from ..launch_options import DEVICE, THREADS, Bool, Choice, Float, Int, check_options
from ..model_type import ServedModel
from ..remote_code import check_allowed, load_error
from .family import EmbeddingFamily

DEFAULT_MAX_BATCH = 32
DEFAULT_BATCH_WAIT_S = 0.002

# One input: a text, or token ids of the model's own vocabulary.
Input = Union[str, List[int]]


@dataclass
class _Job:
    inputs: List[Input]
    truncate: bool
    dimensions: Optional[int]


LAUNCH_OPTIONS = MappingProxyType({
    "device": DEVICE,
    "dtype": Choice("float32", "float16", "bfloat16"),
    # inputs of one forward pass: a request with more runs as several
    "max_batch": Int(1, 4096),
    "batch_wait_ms": Float(0, 1000),
    "n_threads": THREADS,
    "packed": Bool(),
})


class EmbeddingModel(ServedModel):
    launch_kwargs: ClassVar[Tuple[str, ...]] = tuple(LAUNCH_OPTIONS)

    def __init__(self, model_path: str, family: EmbeddingFamily, n_gpu: int = 0, **kwargs: Any):
        kwargs = check_options("Embedding models do not take", kwargs, LAUNCH_OPTIONS)
        self.model_path = model_path
        self.family = family
        self.n_gpu = n_gpu
        self.kwargs = kwargs
        self._model: Any = None
        self._tok: Any = None
        self._torch: Any = None
        self.max_tokens = family.max_tokens
        self.dimensions = family.dimensions
        self._batcher: Optional[DynamicBatcher] = None
        self._packed: Any = None  # packed.PackedEncoder where the model allows it
        self._engine_info: Dict[str, str] = {}  # device and dtype, once loaded

    async def load(self) -> None:
        await asyncio.to_thread(self._load_sync)
        opts = self.kwargs
        wait_ms = opts.get("batch_wait_ms")
        self._batcher = DynamicBatcher(
            self._run,
            max_batch=int(opts.get("max_batch") or DEFAULT_MAX_BATCH),
            max_wait_s=DEFAULT_BATCH_WAIT_S if wait_ms is None else float(wait_ms) / 1000,
            size=lambda job: len(job.inputs),
            name="embedding",
        )
        if opts.get("packed", True):
            self._packed = await self._batcher.in_model_thread(self._attach_packed)

    def _attach_packed(self) -> Any:
        from .packed import PackedEncoder

        return PackedEncoder.attach(self._model, self._padded_forward)

    def _load_sync(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        opts = self.kwargs
        if opts.get("n_threads"):
            torch.set_num_threads(int(opts["n_threads"]))
        device = opts.get("device") or ("cuda" if self.n_gpu > 0 and torch.cuda.is_available() else "cpu")
        model_kwargs = {"dtype": getattr(torch, opts["dtype"])} if opts.get("dtype") else {}
        check_allowed(self.family.model_name, self.family.trust_remote_code)
        try:
            model = SentenceTransformer(self.model_path, device=device,
                                        trust_remote_code=trust_remote_code_allowed(),
                                        model_kwargs=model_kwargs, local_files_only=True)
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise load_error(self.family.model_name,
                             f"sentence-transformers could not load {self.model_path}", e) from None
        model.eval()
        self._torch, self._model, self._tok = torch, model, model.tokenizer
        self._engine_info = {"device": str(model.device),
                             "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
        if model.max_seq_length:
            self.max_tokens = int(model.max_seq_length)
        # renamed in sentence-transformers 6; the old name still works in older ones
        dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions = int(dim() or self.family.dimensions)

    # ---- requests ---------------------------------------------------------------------

    async def embed(self, inputs: Sequence[Input], truncate: bool = False,
                    dimensions: Optional[int] = None) -> Dict[str, Any]:
        """{"data": float32 bytes of [len(inputs), dims], "dims", "prompt_tokens"}."""
        _validate(inputs)
        self._check_dimensions(dimensions)
        assert self._batcher is not None, "embed() before load()"
        # More inputs than one forward pass takes run as several passes, one after
        # another: each pass stays max_batch big (memory, and no pass of minutes), and
        # requests that arrive meanwhile get their turn in between.
        step = self._batcher.max_batch
        parts = []
        for start in range(0, len(inputs), step):
            job = _Job(list(inputs[start:start + step]), truncate, dimensions)
            parts.append(await self._batcher.submit(job))
        if len(parts) == 1:
            return parts[0]
        return {"data": b"".join(p["data"] for p in parts), "dims": parts[0]["dims"],
                "prompt_tokens": sum(p["prompt_tokens"] for p in parts)}

    def _check_dimensions(self, dimensions: Optional[int]) -> None:
        if dimensions is None or dimensions == self.dimensions:
            return
        allowed = [d for d in self.family.matryoshka_dimensions if d <= self.dimensions]
        if dimensions not in allowed:
            sizes = f"one of {', '.join(map(str, allowed))}" if allowed else f"only {self.dimensions}"
            raise InvalidRequestError(
                f"Model {self.family.model_name} cannot return {dimensions} dimensions: "
                f"its embeddings have {self.dimensions}; dimensions may be {sizes}.",
                param="dimensions",
            )

    def stats(self) -> Dict[str, Any]:
        if self._batcher is None:
            return {}
        return {**self._batcher.stats(), **self._engine_info, "packed": self._packed is not None}

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.close()
        self._model = None

    # ---- the model thread -------------------------------------------------------------

    def _run(self, jobs: List[_Job]) -> List[Any]:
        """One forward pass for every valid job; a job that fails its checks gets its error."""
        ids: List[List[int]] = []
        spans: List[Any] = []
        for job in jobs:
            try:
                rows = [self._ids(item, job.truncate) for item in job.inputs]
            except InvalidRequestError as e:
                spans.append(e)
                continue
            spans.append((len(ids), len(ids) + len(rows), sum(len(r) for r in rows)))
            ids.extend(rows)
        vectors = self._forward(ids) if ids else None
        out: List[Any] = []
        for job, span in zip(jobs, spans):
            if isinstance(span, Exception):
                out.append(span)
                continue
            start, end, tokens = span
            assert vectors is not None
            vec = vectors[start:end]
            if job.dimensions is not None and job.dimensions < vec.shape[1]:
                vec = self._torch.nn.functional.normalize(vec[:, : job.dimensions], dim=-1)
            out.append({"data": vec.float().cpu().numpy().tobytes(), "dims": int(vec.shape[1]),
                        "prompt_tokens": tokens})
        return out

    def _ids(self, item: Input, truncate: bool) -> List[int]:
        limit = self.max_tokens
        if isinstance(item, str):
            ids = self._tok(item, add_special_tokens=True, truncation=truncate, max_length=limit)["input_ids"]
        else:
            vocab = len(self._tok)
            bad = [t for t in item if not 0 <= t < vocab]
            if bad:
                raise InvalidRequestError(
                    f"Token id {bad[0]} is outside this model's vocabulary (0..{vocab - 1}).",
                    param="input",
                )
            ids = item[:limit] if truncate else item
        if len(ids) > limit:
            raise InvalidRequestError(
                f"An input has {len(ids)} tokens; model {self.family.model_name} takes at most "
                f"{limit}. Shorten it, or send \"truncate\": true to cut it to {limit} tokens.",
                param="input",
                code="context_length_exceeded",
            )
        return list(ids)

    def _forward(self, ids: List[List[int]]) -> Any:
        if self._packed is not None:
            return self._packed(ids)
        return self._padded_forward(ids)

    def _padded_forward(self, ids: List[List[int]]) -> Any:
        torch = self._torch
        width = max(len(r) for r in ids)
        pad = self._tok.pad_token_id or 0
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in ids])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])
        features = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in getattr(self._tok, "model_input_names", ()):
            features["token_type_ids"] = torch.zeros_like(input_ids)
        device = self._model.device
        features = {k: v.to(device) for k, v in features.items()}
        with torch.inference_mode():
            return self._model(features)["sentence_embedding"]


def _validate(inputs: Sequence[Input]) -> None:
    if not inputs:
        raise InvalidRequestError("input must not be empty.", param="input")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequestError(
            f"input has {len(inputs)} items; one request may embed at most {MAX_EMBEDDING_INPUTS} "
            "(XINFERENCE_MAX_EMBEDDING_INPUTS on the server): send them in several requests.",
            param="input")
    for item in inputs:
        if isinstance(item, str) and not item:
            raise InvalidRequestError("input must not contain empty strings.", param="input")
        if isinstance(item, list) and not item:
            raise InvalidRequestError("input must not contain empty token lists.", param="input")
        if len(item) > MAX_TEXT_CHARS:
            raise InvalidRequestError(
                f"An input has {len(item)} {'characters' if isinstance(item, str) else 'tokens'}; "
                f"at most {MAX_TEXT_CHARS} are taken.", param="input")
