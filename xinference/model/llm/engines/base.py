"""The interface every LLM engine implements.

An engine owns one loaded model and turns token ids into a stream of
`GenerationDelta`s. It is async so the actor's event loop never blocks, and it is
shaped for concurrency: several `generate` calls may be in flight at once; an
engine that cannot interleave them queues them itself.

Hooks, in the order they are called:
  match(family, spec, quantization)  can this engine run that spec? (cheap, no imports)
  __init__(model_path, family, spec, quantization, n_gpu, lora_list, **launch options)
  await load()                        load weights (heavy imports happen here),
                                      moving `load_progress` from 0 to 1 if it can
  tokenize(text, add_bos)             token ids, used for context checks and usage
  chat_ids(messages, template_kwargs) a chat's prompt ids, if the model formats chats itself
  chat_template()                     the model's own chat template, if it ships one
  generate(prompt_ids, params)        async iterator of deltas; the last has finish_reason
  generate_n(prompt_ids, params, n)   n such iterators, choices of one prompt (n > 1,
                                      best_of); a batching engine evaluates the prompt once
  stats()                             load figures, for describe
  await close()                       free the model

A replica's process holds one model, so load() may set what is process-wide: the
llama.cpp engine shortens the interpreter's switch interval (its scheduler thread must
win the GIL back quickly), the Transformers engine sets torch's thread count when the
launch names `n_threads`. Nothing of the kind happens at import: the worker and the
REST server import engine modules too.
"""

import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, AsyncIterator, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

from ....errors import InvalidRequestError
from ....types import GenerationDelta, LoRASpec, SamplingParams
from ...launch_options import Option
from ...memory import MemoryNeed, MiB
from ..family import LLMFamily, LLMSpec


class LLMEngine(ABC):
    name: ClassVar[str]
    model_formats: ClassVar[Tuple[str, ...]]
    # launch kwargs this engine understands, with their types and ranges: the launch plan
    # checks them before any process starts; others are rejected with a 400
    launch_options: ClassVar[Mapping[str, Option]] = {}
    # whether launch may attach LoRA adapters (peft_model_config)
    supports_lora: ClassVar[bool] = False
    # whether generate() honours SamplingParams.json_schema (constrained decoding);
    # requests for it on other engines are refused before they reach the engine
    supports_grammar: ClassVar[bool] = False
    # whether generate() honours SamplingParams.tool_grammar (output forced to be tool
    # calls: tool_choice "required" or a named function)
    supports_tool_grammar: ClassVar[bool] = False
    # whether generate() honours SamplingParams.logprobs and logit_bias
    supports_logprobs: ClassVar[bool] = False
    # the packages load() imports: is_installed() checks that this Python finds them
    libraries: ClassVar[Tuple[str, ...]] = ()
    # how to install it, for the error a launch on a machine without it gets
    # (compiled engines build with our scripts' safe flags, not a plain pip install)
    install_hint: ClassVar[str] = ""
    # what a replica's process holds besides the weights and the KV cache (interpreter,
    # libraries, compute buffers), measured per engine
    memory_overhead: ClassVar[int] = 256 * MiB

    @classmethod
    def match(cls, family: LLMFamily, spec: LLMSpec, quantization: str) -> bool:
        return spec.model_format in cls.model_formats

    @classmethod
    def is_installed(cls) -> bool:
        return all(importlib.util.find_spec(name) is not None for name in cls.libraries)

    @classmethod
    def kv_tokens(cls, kwargs: Mapping[str, Any], family: LLMFamily) -> int:
        """Tokens of KV cache the engine allocates when it loads; 0 when it grows with
        use instead."""
        return 0

    @classmethod
    def memory_need(cls, weights: int, kv_per_token: Optional[int], kwargs: Mapping[str, Any],
                    family: LLMFamily, basis: str) -> MemoryNeed:
        tokens = cls.kv_tokens(kwargs, family)
        kv = tokens * kv_per_token if kv_per_token else 0
        return MemoryNeed(weights=weights, kv_cache=kv, overhead=cls.memory_overhead,
                          kv_tokens=tokens if kv else 0, basis=basis)

    @classmethod
    def interpreter(cls) -> Optional[str]:
        """The Python executable its replicas run under (an engine installed in a
        virtualenv of its own); None: the worker's."""
        return None

    def __init__(
        self,
        model_path: str,
        family: LLMFamily,
        spec: LLMSpec,
        quantization: str,
        n_gpu: int = 0,
        lora_list: Optional[Sequence[LoRASpec]] = None,
        **kwargs: Any,
    ):
        self.model_path = model_path
        self.lora_list: List[LoRASpec] = list(lora_list or [])
        self.n_gpu = n_gpu
        self.family = family
        self.spec = spec
        self.quantization = quantization
        self.kwargs: Dict[str, Any] = kwargs
        # how far load() has come, 0 to 1, for launch progress bars
        self.load_progress = 0.0

    @property
    @abstractmethod
    def context_length(self) -> int:
        """Tokens of context the loaded model can hold (prompt + completion)."""

    @abstractmethod
    async def load(self) -> None: ...

    @abstractmethod
    def tokenize(self, text: str, add_bos: bool) -> List[int]: ...

    @abstractmethod
    def generate(
        self, prompt_ids: List[int], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]: ...

    async def generate_n(self, prompt_ids: List[int], params: SamplingParams,
                         n: int) -> List[AsyncIterator[GenerationDelta]]:
        """`n` generations from one prompt, choice i sampling with `choice_params(params,
        i)`. This default runs them as independent requests (each evaluates the prompt);
        an engine that can copy a prompt's KV cache between sequences overrides it."""
        return [self.generate(prompt_ids, choice_params(params, i)) for i in range(n)]

    def chat_ids(self, messages: List[Dict[str, Any]],
                 template_kwargs: Optional[Dict[str, Any]] = None) -> Optional[List[int]]:
        """A chat's prompt ids, for an engine whose model formats chats in its own code;
        None: the chat is rendered with a Jinja template (the model's or the family's)."""
        return None

    def chat_template(self) -> Optional[Tuple[str, Dict[str, str]]]:
        """The model's own Jinja chat template and the special tokens it uses
        (bos_token, eos_token), or None to use the family's."""
        return None

    def check_lora_folders(self) -> None:
        """Each LoRA adapter given at launch must be a folder saved by peft."""
        for lora in self.lora_list:
            if not (Path(lora.local_path) / "adapter_config.json").is_file():
                raise InvalidRequestError(
                    f"LoRA {lora.lora_name!r}: {lora.local_path} is not a peft adapter folder "
                    "(no adapter_config.json there).", param="peft_model_config")

    def unknown_lora(self, name: str) -> InvalidRequestError:
        """The error for a request naming an adapter this model did not load."""
        loaded = ", ".join(a.lora_name for a in self.lora_list) or "none"
        return InvalidRequestError(
            f"This model has no LoRA adapter {name!r} (loaded: {loaded}).",
            param="lora_name", code="lora_not_found")

    def stats(self) -> Dict[str, Any]:
        """Load figures for describe (slots busy/free, queue length); {} if none."""
        return {}

    async def close(self) -> None:
        return None


def choice_params(params: SamplingParams, i: int) -> SamplingParams:
    """What choice `i` of a request samples with: a seeded request's choices get seeds
    seed, seed + 1, ... so that they differ from each other yet repeat from run to run."""
    update: dict = {"n": 1, "best_of": None}
    if params.seed is not None and i:
        update["seed"] = (params.seed + i) % (1 << 63)
    return params.model_copy(update=update)
