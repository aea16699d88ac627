"""Transformers engine (PyTorch): any Hugging Face causal LM, continuously batched.

Loads a model folder (`pytorch` specs) with AutoTokenizer + AutoModelForCausalLM, or
a GGUF file that transformers can dequantize (`ggufv2` specs). Requests are batched
by a scheduler thread (scheduler.py) behind the same bounded queue as
the llama.cpp engine. LoRA adapters (saved by peft) are wrapped into the model's
linear layers (lora.py) and picked per request; rows for different adapters share one
batch.

torch and transformers are imported only in `load()`.
"""

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from .....constants import trust_remote_code_allowed
from .....errors import InvalidRequestError
from .....types import SamplingParams
from ....launch_options import DEVICE, THREADS, Choice, Int
from ....memory import MemoryNeed, MiB
from ....remote_code import load_error
from ...chat_template import tokenizer_template
from ...family import LLMFamily
from ..admission import QUEUE_OPTIONS, queue_settings
from ..batched import BatchedEngine
from ..cpu import cpu_dtype
from ..guidance import GuideTokenizer

# GGUF quantizations transformers can dequantize on load.
GGUF_QUANTS = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
               "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K")
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_MAX_NUM_SEQS_CPU = 8
DEFAULT_MAX_NUM_SEQS_GPU = 32
DEFAULT_PREFILL_CHUNK = 512


class TransformersEngine(BatchedEngine):
    name = "Transformers"
    model_formats = ("pytorch", "ggufv2")
    libraries = ("torch", "transformers")
    supports_lora: ClassVar[bool] = True
    supports_grammar: ClassVar[bool] = True
    supports_tool_grammar: ClassVar[bool] = True
    supports_logprobs: ClassVar[bool] = True
    launch_options = {
        **QUEUE_OPTIONS,
        "dtype": Choice(*DTYPES, "auto"),
        "torch_dtype": Choice(*DTYPES, "auto"),
        "device": DEVICE,
        "max_num_seqs": Int(1, 1024),
        # the family's context_length caps it
        "max_model_len": Int(1, 1 << 20, capped_by="context_length"),
        "n_threads": THREADS,
        "prefill_chunk": Int(1, 1 << 16),
    }

    @classmethod
    def match(cls, family: Any, spec: Any, quantization: str) -> bool:
        if spec.model_format == "pytorch":
            # no bitsandbytes here: a "4-bit" launch would silently load full precision
            return quantization == "none"
        return spec.model_format == "ggufv2" and quantization.upper() in GGUF_QUANTS

    # torch, transformers and xinference imported hold ~210 MiB resident here, plus
    # activations; the KV cache grows with use and is not reserved up front
    memory_overhead = 400 * MiB

    @classmethod
    def memory_need(cls, weights: int, kv_per_token: Optional[int], kwargs: Mapping[str, Any],
                    family: LLMFamily, basis: str) -> MemoryNeed:
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
        if dtype in (None, "auto"):
            dtype = cpu_dtype()
        if dtype == "float32":  # checkpoints are 16-bit: float32 doubles them
            weights *= 2
        return MemoryNeed(weights=weights, overhead=cls.memory_overhead, basis=basis)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tok: Any = None
        self._model: Any = None
        self._scheduler: Any = None
        self._context: Optional[int] = None
        self.device: Optional[str] = None
        self.dtype: Optional[str] = None
        self._eos: List[int] = []
        self._vocab_size = 0
        self._guide = GuideTokenizer(self._guide_tokenizer)

    @property
    def context_length(self) -> int:
        return self._context if self._context is not None else self.family.context_length

    # ---- loading ----------------------------------------------------------------------

    async def load(self) -> None:
        self._check_options()
        await asyncio.to_thread(self._load_sync)

    def _check_options(self) -> None:
        opts = self.kwargs
        dtype = opts.get("dtype") or opts.get("torch_dtype")
        if dtype is not None and dtype not in (*DTYPES, "auto"):
            raise InvalidRequestError(
                f"dtype must be one of {', '.join(DTYPES)} or auto; got {dtype!r}.", param="dtype"
            )
        for key in ("max_num_seqs", "prefill_chunk", "max_model_len", "n_threads"):
            value = opts.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidRequestError(f"{key} must be a positive integer; got {value!r}.", param=key)
        self.check_lora_folders()

    def _load_sync(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        opts = self.kwargs
        self.load_progress = 0.05  # torch and transformers imported
        device = self.device = _pick_device(torch, opts.get("device"), self.n_gpu)
        dtype_name = self.dtype = _pick_dtype(torch, opts.get("dtype") or opts.get("torch_dtype"), device)
        if opts.get("n_threads"):
            torch.set_num_threads(int(opts["n_threads"]))
        remote = trust_remote_code_allowed()  # the worker's setting, never the request's
        folder, gguf = _split_path(self.model_path)
        extra: Dict[str, Any] = {"gguf_file": gguf} if gguf else {}
        # Several GPUs for one replica: accelerate spreads the layers over them.
        spread = device == "cuda" and self.n_gpu > 1 and torch.cuda.device_count() > 1
        try:
            tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote, **extra)
            # a GGUF tokenizer takes ~40% of a GGUF load, a folder's a few percent
            self.load_progress = 0.4 if gguf else 0.1
            model: Any = AutoModelForCausalLM.from_pretrained(
                folder, dtype=getattr(torch, dtype_name), trust_remote_code=remote,
                **({"device_map": "auto"} if spread else {}), **extra,
            )
        except (OSError, ValueError, KeyError) as e:
            raise load_error(self.family.model_name, f"transformers could not load {self.model_path}",
                             e) from None
        self.load_progress = 0.9
        if not spread:
            model.to(device)
        model.eval()
        device = str(model.get_input_embeddings().weight.device)
        try:
            gen_config = GenerationConfig.from_pretrained(folder)
        except OSError:
            gen_config = model.generation_config
        text_config = model.config.get_text_config()
        n_layers = int(text_config.num_hidden_layers)
        positions = getattr(text_config, "max_position_embeddings", None) or self.family.context_length
        limit = opts.get("max_model_len")
        self._context = int(min(positions, limit)) if limit else int(positions)
        lora = None
        if self.lora_list:
            from .lora import LoRASet

            lora = LoRASet(model, self.lora_list)
        self._tok, self._model = tok, model

        from .scheduler import TransformersScheduler, eos_token_ids

        self._eos = sorted(eos_token_ids(tok, gen_config))
        self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
        max_seqs = int(opts.get("max_num_seqs") or (
            DEFAULT_MAX_NUM_SEQS_GPU if device.startswith("cuda") else DEFAULT_MAX_NUM_SEQS_CPU))
        self._scheduler = TransformersScheduler(
            model,
            tok,
            n_layers=n_layers,
            device=device,
            max_num_seqs=max_seqs,
            prefill_chunk=int(opts.get("prefill_chunk") or DEFAULT_PREFILL_CHUNK),
            queue=queue_settings(opts, max_seqs),
            eos_ids=set(self._eos),
            lora=lora,
            vocab_size=self._vocab_size,
        )
        self.load_progress = 1.0

    # ---- serving ----------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool) -> List[int]:
        return list(self._tok(text, add_special_tokens=add_bos)["input_ids"])

    def chat_template(self) -> Optional[Tuple[str, Dict[str, str]]]:
        return tokenizer_template(self._tok)

    def _special_id(self, text: str) -> Optional[int]:
        ids = self._tok.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 and ids[0] in self._tok.all_special_ids else None

    def _guide_tokenizer(self) -> Any:
        from llguidance.hf import from_tokenizer

        try:
            return from_tokenizer(self._tok, n_vocab=self._vocab_size, eos_token=self._eos)
        except Exception as e:  # noqa: BLE001 - a slow (Python) tokenizer, or one it cannot read
            raise InvalidRequestError(
                f"Output cannot be constrained with this model's tokenizer ({type(e).__name__}: {e}).",
                param="response_format") from None

    def _vocab_width(self) -> int:
        return self._vocab_size

    def _check(self, params: SamplingParams) -> None:
        if params.lora_name is not None and params.lora_name not in {a.lora_name for a in self.lora_list}:
            raise self.unknown_lora(params.lora_name)

    def stats(self) -> Dict[str, Any]:
        if self._scheduler is None:
            return {}
        return {**super().stats(), "device": self.device, "dtype": self.dtype}

    async def close(self) -> None:
        await super().close()
        self._model = None
        self._tok = None


def _split_path(model_path: str) -> Tuple[str, Optional[str]]:
    """(folder, gguf file name or None)."""
    path = Path(model_path)
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    return str(path), None


def _pick_device(torch: Any, wanted: Optional[str], n_gpu: int) -> str:
    if wanted:
        if wanted.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidRequestError("device cuda was asked for, but CUDA is not available.", param="device")
        return str(wanted)
    return "cuda" if n_gpu > 0 and torch.cuda.is_available() else "cpu"


def _pick_dtype(torch: Any, wanted: Optional[str], device: str) -> str:
    if wanted and wanted != "auto":
        return wanted
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return cpu_dtype()

