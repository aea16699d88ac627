"""vLLM engine, for Hugging Face model folders (`pytorch` specs), on GPUs or on CPU.

vLLM schedules and batches by itself (continuous batching over a paged KV cache); in
front of it sit the same bounds as our other engines: `max_num_seqs` slots, a bounded
queue (429 beyond `max_queue`, 503 after `queue_timeout_s`). A request whose client
leaves is aborted in vLLM. LoRA adapters given at launch are picked per request. JSON
schemas and forced tool calls (tool_choice "required" or a named function) constrain
decoding through vLLM's structured outputs with its llguidance ("guidance") backend: the
same grammars as our other engines (`guidance.tool_lark`). Requests may ask for
log-probabilities (logprobs / top_logprobs, see `_start` for which values) and
logit_bias.

vLLM pins its own torch and transformers, so it usually lives in a virtualenv of its
own (scripts/install_vllm.sh): the worker starts this engine's replicas with that
environment's Python (`interpreter()`), and only the replica imports vllm.
"""

import asyncio
import glob
import importlib.util
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, ClassVar, Dict, List, Mapping, Optional, Tuple

from .....constants import XINFERENCE_HOME, trust_remote_code_allowed
from .....errors import InvalidRequestError, XinferenceError
from .....types import GenerationDelta, SamplingParams
from ....launch_options import Bool, Choice, Float, Int
from ....memory import MemoryNeed
from ...chat_template import tokenizer_template
from ...family import LLMFamily
from ..admission import QUEUE_OPTIONS, AsyncSlots, queue_settings
from ..base import LLMEngine
from ..cpu import cpu_dtype
from ..guidance import JSON_OPTIONS, tool_lark
from ..logprobs import check_logit_bias
from ..text_stream import paced_interval
from .stream import PendingOutput

logger = logging.getLogger(__name__)

PYTHON_ENV = "XINFERENCE_VLLM_PYTHON"
VENVS = Path.home() / ".cache" / "xinference" / "venvs"
DEFAULT_MAX_NUM_SEQS_CPU = 8
DEFAULT_MAX_NUM_SEQS_GPU = 64
# On CPU the context defaults like llama.cpp's n_ctx: the KV cache is sized in GiB
DEFAULT_MAX_MODEL_LEN_CPU = 4096
DEFAULT_KV_CACHE_GIB_CPU = 2
SMALL_MACHINE_CORES = 4


def vllm_python() -> Optional[str]:
    """The Python that runs vLLM replicas: XINFERENCE_VLLM_PYTHON, this one when vllm
    imports here, else the newest environment scripts/install_vllm.sh made."""
    named = os.environ.get(PYTHON_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    found = sorted(glob.glob(str(VENVS / "vllm-*" / "bin" / "python")))
    return found[-1] if found else None


class VllmEngine(LLMEngine):
    name = "vLLM"
    model_formats = ("pytorch",)
    supports_lora: ClassVar[bool] = True
    supports_grammar: ClassVar[bool] = True
    supports_tool_grammar: ClassVar[bool] = True
    supports_logprobs: ClassVar[bool] = True
    install_hint = "bash scripts/install_vllm.sh"
    launch_options = {
        **QUEUE_OPTIONS,
        "max_model_len": Int(1, 1 << 22, capped_by="context_length"),
        "max_num_seqs": Int(1, 4096),
        "dtype": Choice("auto", "float32", "bfloat16", "float16"),
        "enforce_eager": Bool(),
        "enable_prefix_caching": Bool(),
        # GPU replicas: the share of each GPU's memory vLLM may take (weights + KV cache)
        "gpu_memory_utilization": Float(0.05, 0.99),
        "kv_cache_space_gib": Int(1, 4096),  # CPU replicas: the KV cache, allocated up front
        "max_lora_rank": Int(1, 512),
    }

    @classmethod
    def match(cls, family: Any, spec: Any, quantization: str) -> bool:
        return spec.model_format == "pytorch" and quantization == "none"

    @classmethod
    def is_installed(cls) -> bool:
        return vllm_python() is not None

    @classmethod
    def interpreter(cls) -> Optional[str]:
        python = vllm_python()
        return None if python == sys.executable else python

    # The issue that brought this engine measured 6.6 GiB resident for Gemma 3 270M
    # (0.5 GiB of bf16 weights) with a 2 GiB KV cache on CPU: about 4 GiB besides
    # (torch, the engine core process, its buffers)
    memory_overhead = 4 << 30

    @classmethod
    def memory_need(cls, weights: int, kv_per_token: Optional[int], kwargs: Mapping[str, Any],
                    family: LLMFamily, basis: str) -> MemoryNeed:
        # on CPU the KV cache is a fixed size allocated up front; on a GPU
        # (gpu_memory_utilization) it lives there, not in RAM
        gpu = kwargs.get("gpu_memory_utilization") is not None
        kv = 0 if gpu else int(kwargs.get("kv_cache_space_gib") or DEFAULT_KV_CACHE_GIB_CPU) << 30
        return MemoryNeed(weights=weights, kv_cache=kv, overhead=cls.memory_overhead, basis=basis)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._engine: Any = None
        self._tok: Any = None
        self._slots: Optional[AsyncSlots] = None
        self._context: Optional[int] = None
        self._loras: Dict[str, Any] = {}
        self._vocab = 0  # the model's logits width: the ids logit_bias may name
        self._specials: Dict[str, Optional[int]] = {}
        self._pieces: Dict[int, str] = {}
        self.device = "cuda" if self.n_gpu > 0 else "cpu"
        self.dtype: Optional[str] = None

    @property
    def context_length(self) -> int:
        return self._context or int(self.kwargs.get("max_model_len") or self.family.context_length)

    async def load(self) -> None:
        opts = self.kwargs
        gpu = self.n_gpu > 0
        wrong = "kv_cache_space_gib" if gpu else "gpu_memory_utilization"
        if opts.get(wrong) is not None:
            where = "GPU" if gpu else "CPU"
            raise InvalidRequestError(
                f"{wrong} does not apply to a {where} replica; size its memory with "
                f"{'gpu_memory_utilization' if gpu else 'kv_cache_space_gib'}.", param=wrong)
        self.check_lora_folders()
        # the replica's process is vLLM's alone: its settings go into its environment
        os.environ.setdefault("VLLM_CACHE_ROOT", str(XINFERENCE_HOME / "vllm"))
        os.environ["HF_HUB_OFFLINE"] = "1"  # the weights are on disk already
        if not gpu and (os.cpu_count() or 1) <= SMALL_MACHINE_CORES:
            # vLLM keeps a core for its scheduler by default: on 2 cores that halves the
            # decoder (measured: 8 concurrent streams 37 -> 55 tokens/s with none kept)
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        await self._start(gpu)

    async def _start(self, gpu: bool) -> None:
        from vllm import AsyncEngineArgs
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.async_llm_engine import AsyncLLMEngine
        from vllm.lora.request import LoRARequest

        opts = self.kwargs
        max_len = opts.get("max_model_len") or (
            None if gpu else min(self.family.context_length, DEFAULT_MAX_MODEL_LEN_CPU))
        seqs = int(opts.get("max_num_seqs") or (DEFAULT_MAX_NUM_SEQS_GPU if gpu else DEFAULT_MAX_NUM_SEQS_CPU))
        args: Dict[str, Any] = {
            "model": self.model_path, "tokenizer": self.model_path,
            "dtype": opts.get("dtype") or ("auto" if gpu else cpu_dtype()), "max_model_len": max_len,
            "max_num_seqs": seqs,
            # CPU: compiling takes ~75 s more at every start (its cache does not reload on
            # CPU) for ~25 % faster decoding; GPUs keep vLLM's CUDA graphs
            "enforce_eager": bool(opts.get("enforce_eager", not gpu)),
            "tensor_parallel_size": max(1, self.n_gpu),
            "trust_remote_code": trust_remote_code_allowed(),
            "disable_log_stats": True,
            # llguidance, as our other engines: it takes the Lark grammars tool calls are
            # forced with (%json rules, special tokens as <[id]>), which xgrammar does not.
            # vLLM picks the backend per engine, not per request (a request naming another
            # one is refused), so JSON schemas go through it too. Compact JSON: with any
            # whitespace allowed a small model may write newlines until max_tokens; objects
            # that list their properties are closed, as xgrammar and OpenAI's strict mode
            # read them (guidance.py's _closed, for the other engines).
            "structured_outputs_config": StructuredOutputsConfig(
                backend="guidance", disable_any_whitespace=True, disable_additional_properties=True),
            # Which log-probabilities vLLM reports. Ours (logprobs.py, as OpenAI) are the
            # log-softmax of the logits after the grammar, penalties and logit_bias, before
            # temperature and top-k/top-p. vLLM 0.32 offers neither exactly (its sampler,
            # read and measured): "raw_logprobs" (its default) is taken after the grammar
            # mask but before penalties and logit_bias; "processed_logprobs" after those
            # and also after temperature and top-k/top-p truncation (except for greedy
            # requests). Raw is exact for every request without penalties or logit_bias;
            # processed would be off for nearly every sampled one (a top_k of 40 is the
            # default here, and any temperature but 1 rescales it), and would differ for
            # the same token with the temperature. So raw: with logit_bias or penalties
            # the values are the model's before them (a token forced with +100 shows its
            # own log-probability, not ~0).
            "logprobs_mode": "raw_logprobs",
        }
        if opts.get("enable_prefix_caching") is not None:
            args["enable_prefix_caching"] = bool(opts["enable_prefix_caching"])
        if gpu and opts.get("gpu_memory_utilization") is not None:
            args["gpu_memory_utilization"] = float(opts["gpu_memory_utilization"])
        if not gpu:
            # on CPU vLLM otherwise takes a share of all RAM for its KV cache, up front
            gib = int(opts.get("kv_cache_space_gib") or DEFAULT_KV_CACHE_GIB_CPU)
            args["kv_cache_memory_bytes"] = gib << 30
        if self.lora_list:
            args.update(enable_lora=True, max_loras=len(self.lora_list),
                        max_lora_rank=int(opts.get("max_lora_rank") or 64))
        try:
            engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**args))
        except (ValueError, OSError) as e:  # vLLM's own checks: config, memory, files
            raise InvalidRequestError(f"vLLM could not start {self.model_path}: {e}",
                                      param="model_path") from None
        self._engine = engine
        self._tok = engine.get_tokenizer()
        self._context = int(engine.model_config.max_model_len)
        self._vocab = int(engine.model_config.get_vocab_size())
        self.dtype = str(engine.model_config.dtype).removeprefix("torch.")
        self._loras = {a.lora_name: LoRARequest(a.lora_name, i + 1, a.local_path)
                       for i, a in enumerate(self.lora_list)}
        queue = queue_settings(opts, seqs)
        self._slots = AsyncSlots(seqs, queue.max_queue, queue.timeout_s)
        self.load_progress = 1.0

    def tokenize(self, text: str, add_bos: bool) -> List[int]:
        return list(self._tok.encode(text, add_special_tokens=add_bos))

    def chat_template(self) -> Optional[Tuple[str, Dict[str, str]]]:
        return tokenizer_template(self._tok)

    def _special_id(self, text: str) -> Optional[int]:
        """The id of the (special) token written `text`, for `<[id]>` in tool grammars."""
        if text not in self._specials:
            ids = self._tok.encode(text, add_special_tokens=False)
            self._specials[text] = ids[0] if len(ids) == 1 else None
        return self._specials[text]

    def _decode(self, token: int) -> str:
        """A token's own text, for log-probability entries vLLM did not decode."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._tok.decode([token], skip_special_tokens=False)
        return piece

    async def generate(
        self, prompt_ids: List[int], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        if not prompt_ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        lora = None
        if params.lora_name is not None:
            lora = self._loras.get(params.lora_name)
            if lora is None:
                raise self.unknown_lora(params.lora_name)
        check_logit_bias(params.logit_bias, self._vocab)
        from vllm.exceptions import VLLMClientError

        try:
            sampling = self._sampling(params)
        except (ValueError, VLLMClientError) as e:  # vLLM's own checks (e.g. top_p above 0)
            raise InvalidRequestError(f"vLLM cannot sample with these options: {e}") from None
        slots = self._slots
        assert slots is not None, "generate() before load()"
        await slots.acquire()
        try:
            async for delta in self._stream(prompt_ids, sampling, params, lora):
                yield delta
        finally:
            slots.release()

    def _sampling(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VllmParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = None
        if params.json_schema is not None:
            # the same JSON text as the other engines: ", " and ": " between items
            schema = params.json_schema
            options = {**JSON_OPTIONS, **(schema.get("x-guidance") or {})}
            structured = StructuredOutputsParams(json={**schema, "x-guidance": options})
        elif params.tool_grammar is not None:
            structured = StructuredOutputsParams(grammar=tool_lark(params.tool_grammar, self._special_id))
        return VllmParams(
            n=1, max_tokens=params.max_tokens, temperature=params.temperature,
            top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else 0,
            repetition_penalty=params.repetition_penalty,
            presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
            # Stop strings are matched here, not by vLLM: it holds back the last
            # len(longest stop) - 1 characters of every stream, which delayed the first
            # text by a few tokens (time to first token 2x vLLM's own server's). Ours holds
            # back only text that may start a stop string.
            seed=params.seed, stop_token_ids=list(params.stop_token_ids),
            ignore_eos=params.ignore_eos, structured_outputs=structured,
            logprobs=params.logprobs, logit_bias=dict(params.logit_bias) or None,
            # markers such as Mistral's [TOOL_CALLS] are special tokens
            skip_special_tokens=not params.keep_special,
            output_kind=RequestOutputKind.DELTA)

    async def _stream(self, prompt_ids: List[int], sampling: Any, params: SamplingParams,
                      lora: Any) -> AsyncIterator[GenerationDelta]:
        from vllm.exceptions import VLLMClientError

        request_id = uuid.uuid4().hex
        interval = queue_settings(self.kwargs, 1).stream_interval
        pending = PendingOutput(params.stop, params.logprobs, self._decode)
        produced, cached, last = 0, 0, 0.0
        ended = False  # vLLM finished the request itself: nothing to abort
        try:
            outputs = self._engine.generate({"prompt_token_ids": list(prompt_ids)}, sampling,
                                            request_id, lora_request=lora)
            async for out in outputs:
                step = out.outputs[0]
                produced += len(step.token_ids)
                cached = int(getattr(out, "num_cached_tokens", 0) or 0)
                hit = pending.feed(step)
                reason = "stop" if hit else step.finish_reason
                if reason is not None:
                    ended = step.finish_reason is not None
                    if reason not in ("stop", "length"):
                        raise XinferenceError(f"vLLM ended the request: {reason}.")
                    pending.finish(hit)
                    text, logprobs = pending.take()
                    yield GenerationDelta(text=text, finish_reason=reason,  # type: ignore[arg-type]
                                          prompt_tokens=len(prompt_ids), completion_tokens=produced,
                                          cached_tokens=cached, logprobs=logprobs)
                    return
                now = time.monotonic()
                # coalesced and paced like the other engines' streams: each piece is an
                # RPC and an SSE write on the CPU the model needs
                if pending.text and now - last >= paced_interval(interval, self._slots_busy()):
                    text, logprobs = pending.take()
                    yield GenerationDelta(text=text, logprobs=logprobs)
                    last = now
        except (ValueError, VLLMClientError) as e:  # the request failed vLLM's checks
            ended = True
            raise InvalidRequestError(f"vLLM refused the request: {e}",
                                      param=_refused_param(e, params)) from None
        finally:
            if not ended:  # the client left, or a stop string ended it here
                try:
                    await self._engine.abort(request_id)
                except Exception:  # noqa: BLE001 - an engine already gone holds nothing
                    logger.warning("could not abort vLLM request %s", request_id, exc_info=True)

    def _slots_busy(self) -> int:
        return self._slots.busy if self._slots is not None else 0

    def stats(self) -> Dict[str, Any]:
        if self._slots is None:
            return {}
        return {**self._slots.stats(), "device": self.device, "dtype": self.dtype}

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            await asyncio.to_thread(engine.shutdown)


def _refused_param(error: Exception, params: SamplingParams) -> str:
    """The request field a vLLM refusal is about, for the 400."""
    named = getattr(error, "parameter", None)
    if named == "logit_bias":
        return named
    if params.json_schema is not None:
        return "response_format"
    if params.tool_grammar is not None:
        return "tool_choice"
    return "messages"
