"""llama.cpp engine (llama-cpp-python's C API), for GGUF models, and for legacy GGML
(GGJT v3) LLaMA files, which it converts to GGUF once before the first load
(model/llm/ggml_v3.py).

One llama.cpp context per replica, shared by `n_parallel` slots: a scheduler thread
batches every running request into each decode step (see scheduler.py).
`llama_cpp` is imported only in `load()`, so importing this module is cheap.

Sizes: `n_ctx` is the context of one slot, i.e. what one request may use (prompt +
completion); the KV cache holds `n_ctx * n_parallel` tokens in all.
"""

import asyncio
import ctypes
import os
import sys
import warnings
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .....errors import InvalidRequestError
from ....launch_options import Bool, Int
from ....memory import MiB
from ...family import LLMFamily, LLMSpec, ggml_architecture
from ..admission import QUEUE_OPTIONS, queue_settings
from ..batched import BatchedEngine
from ..guidance import GuideTokenizer

DEFAULT_N_CTX = 4096
DEFAULT_N_BATCH = 512
# Tokens of KV cache the default slot count may take (n_ctx * n_parallel).
DEFAULT_KV_TOKENS = 32768
MAX_DEFAULT_PARALLEL = 16
SWITCH_INTERVAL_S = 0.0005


def _n_ctx(kwargs: Mapping[str, Any], family: LLMFamily) -> int:
    """Tokens of one slot."""
    return int(kwargs.get("n_ctx") or min(family.context_length, DEFAULT_N_CTX))


def _n_parallel(kwargs: Mapping[str, Any], family: LLMFamily) -> int:
    if kwargs.get("n_parallel") is not None:
        n = int(kwargs["n_parallel"])
        if not 1 <= n <= 256:
            raise InvalidRequestError("n_parallel must be between 1 and 256.", param="n_parallel")
        return n
    # Batching pays up to a few sequences per core; keep the KV cache bounded.
    by_cores = min(MAX_DEFAULT_PARALLEL, max(4, 4 * _default_threads()))
    return max(1, min(by_cores, DEFAULT_KV_TOKENS // _n_ctx(kwargs, family)))


class LlamaCppEngine(BatchedEngine):
    name = "llama.cpp"
    model_formats = ("ggufv2", "ggmlv3")
    libraries = ("llama_cpp",)
    supports_grammar = True
    supports_tool_grammar = True
    supports_logprobs = True
    install_hint = "bash scripts/install_llama_cpp.sh"
    launch_options = {
        **QUEUE_OPTIONS,
        # tokens of one slot; the family's context_length caps it
        "n_ctx": Int(1, 1 << 20, capped_by="context_length"),
        "n_parallel": Int(1, 256),
        "n_batch": Int(1, 1 << 16),
        "n_threads": Int(1, 1024),
        "n_gpu_layers": Int(-1, 100_000),  # -1: all
        "use_mmap": Bool(),
        "use_mlock": Bool(),
        "flash_attn": Bool(),
        "swa_full": Bool(),
        "verbose": Bool(),
    }

    @classmethod
    def match(cls, family: LLMFamily, spec: LLMSpec, quantization: str) -> bool:
        # ChatGLM's ggmlv3 files are chatglm.cpp's own format, which llama.cpp never read
        if spec.model_format == "ggmlv3" and ggml_architecture(family) != "llama":
            return False
        return super().match(family, spec, quantization)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lib: Any = None
        self._model: Any = None
        self._ctx: Any = None
        self._vocab: Any = None
        self._scheduler: Any = None
        self._n_ctx_seq: Optional[int] = None
        self._pieces: Dict[int, bytes] = {}
        self._specials: Dict[str, Optional[int]] = {}
        self._eog: List[int] = []
        self._guide = GuideTokenizer(self._guide_tokenizer)
        self._own_template: Optional[Tuple[str, Dict[str, str]]] = None

    @property
    def context_length(self) -> int:
        return self._n_ctx_seq if self._n_ctx_seq is not None else self._n_ctx()

    # measured here: xinference and llama_cpp imported hold ~70 MiB resident, compute
    # buffers ~50 MiB more once a context exists
    memory_overhead = 160 * MiB

    @classmethod
    def kv_tokens(cls, kwargs: Mapping[str, Any], family: LLMFamily) -> int:
        return _n_ctx(kwargs, family) * _n_parallel(kwargs, family)

    def _n_ctx(self) -> int:
        return _n_ctx(self.kwargs, self.family)

    def _n_parallel(self) -> int:
        return _n_parallel(self.kwargs, self.family)

    async def load(self) -> None:
        await asyncio.to_thread(self._load_sync)

    def _load_sync(self) -> None:
        import llama_cpp
        from llama_cpp import _logger

        if self.spec.model_format == "ggmlv3":
            from ...ggml_v3 import gguf_for

            def converted(fraction: float) -> None:
                self.load_progress = 0.5 * fraction

            self.model_path = gguf_for(self.model_path, self.family.context_length, converted)
        lib = self._lib = llama_cpp
        opts = self.kwargs
        _logger.set_verbose(bool(opts.get("verbose", False)))
        lib.llama_backend_init()
        n_ctx, n_parallel = self._n_ctx(), self._n_parallel()
        n_batch = int(opts.get("n_batch") or DEFAULT_N_BATCH)
        threads = int(opts.get("n_threads") or _default_threads())

        mparams = lib.llama_model_default_params()
        n_gpu_layers = opts.get("n_gpu_layers")
        mparams.n_gpu_layers = int(n_gpu_layers if n_gpu_layers is not None else (-1 if self.n_gpu > 0 else 0))
        if opts.get("use_mmap") is not None:
            mparams.use_mmap = bool(opts["use_mmap"])
        if opts.get("use_mlock") is not None:
            mparams.use_mlock = bool(opts["use_mlock"])
        model = lib.llama_model_load_from_file(self.model_path.encode(), mparams)
        if not model:
            raise InvalidRequestError(
                f"llama.cpp could not load {self.model_path} (not a GGUF file, or an "
                "architecture this llama.cpp does not know).",
                param="model_path",
            )
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = n_ctx * n_parallel
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = n_parallel
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        # One KV stream per slot: a slot's cache survives its request (prefix reuse)
        # and never competes with another slot for cells.
        cparams.kv_unified = False
        cparams.swa_full = bool(opts.get("swa_full", False))
        if opts.get("flash_attn") is not None:
            cparams.flash_attn_type = 1 if opts["flash_attn"] else 0
        cparams.no_perf = True
        ctx = lib.llama_init_from_model(model, cparams)
        if not ctx:
            lib.llama_model_free(model)
            raise InvalidRequestError(
                f"llama.cpp could not create a context of {n_ctx} x {n_parallel} tokens "
                "(n_ctx x n_parallel); lower them.",
                param="n_ctx",
            )
        self._model, self._ctx = model, ctx
        self._vocab = lib.llama_model_get_vocab(model)
        self._own_template = self._read_template(model)
        self._eog = self._eog_tokens()  # a scan of the vocabulary: once
        self._n_ctx_seq = min(n_ctx, int(lib.llama_n_ctx_seq(ctx)))
        self._piece_buf = ctypes.create_string_buffer(256)

        from .scheduler import LlamaScheduler

        # The scheduler thread gives up the GIL in every llama.cpp call and must win
        # it back from the event loop thread before its next step; by default a
        # busy holder keeps it up to 5 ms, a stall for every stream in the batch.
        sys.setswitchinterval(SWITCH_INTERVAL_S)

        self._scheduler = LlamaScheduler(
            lib,
            model,
            ctx,
            n_parallel=n_parallel,
            n_batch=n_batch,
            queue=queue_settings(opts, n_parallel),
            eog_tokens=self._eog,
            piece=self._piece,
            special_id=self._special_id,
        )

    def _read_template(self, model: Any) -> Optional[Tuple[str, Dict[str, str]]]:
        """The GGUF's own `tokenizer.chat_template`, with the BOS/EOS text it writes."""
        raw = self._lib.llama_model_chat_template(model, None)
        if not raw:
            return None

        def text(token: int) -> str:
            if token < 0:
                return ""
            return (self._lib.llama_vocab_get_text(self._vocab, token) or b"").decode("utf-8", "replace")

        return raw.decode("utf-8", "replace"), {
            "bos_token": text(self._lib.llama_vocab_bos(self._vocab)),
            "eos_token": text(self._lib.llama_vocab_eos(self._vocab)),
        }

    def chat_template(self) -> Optional[Tuple[str, Dict[str, str]]]:
        return self._own_template

    def tokenize(self, text: str, add_bos: bool) -> List[int]:
        data = text.encode("utf-8")
        size = len(data) + 2
        while True:
            buf = (self._lib.llama_token * size)()
            n = self._lib.llama_tokenize(self._vocab, data, len(data), buf, size, add_bos, True)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            buf = self._piece_buf
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def _special_id(self, text: str) -> Optional[int]:
        """The id of the special token written `text`, if the vocabulary has one."""
        if text not in self._specials:
            ids = self.tokenize(text, add_bos=False)
            self._specials[text] = ids[0] if len(ids) == 1 else None
        return self._specials[text]

    def _guide_tokenizer(self) -> Any:
        from llguidance.llamacpp import lltokenizer_from_vocab

        with warnings.catch_warnings():
            # it reads each token's attributes through a deprecated alias: a warning per token
            warnings.simplefilter("ignore", DeprecationWarning)
            return lltokenizer_from_vocab(self._vocab, n_vocab=self._lib.llama_vocab_n_tokens(self._vocab),
                                          eos_token=self._eog)

    def _eog_tokens(self) -> List[int]:
        """Every end-of-generation token of the vocabulary (a scan, done once at load)."""
        n = self._lib.llama_vocab_n_tokens(self._vocab)
        return [t for t in range(n) if self._lib.llama_vocab_is_eog(self._vocab, t)]

    def _vocab_width(self) -> int:
        return int(self._lib.llama_vocab_n_tokens(self._vocab))

    async def close(self) -> None:
        await super().close()  # the scheduler first: it uses the context
        if self._ctx is not None:
            self._lib.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            self._lib.llama_model_free(self._model)
            self._model = None


def _default_threads() -> int:
    # llama.cpp decodes fastest on physical cores; leave one for the serving loop
    # only when there are plenty.
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, n - 1) if n > 4 else n
