"""Per-request samplers for the llama.cpp scheduler, built from SamplingParams.

Each sequence in a batch gets its own sampler (own parameters, own seeded RNG), so a
request samples the same whatever else shares its batch. What changes the logits
first (bans, penalties, logit_bias, an output grammar) was done to the sequence's row
already (logits.py); a sampler only chooses from it.

Plain greedy decoding is an argmax over the row, done with numpy in place: llama.cpp's
sampler first copies the whole vocabulary (262k entries for Gemma) into a candidate
array, which costs more per step than the argmax itself. Sampling runs as a llama.cpp
sampler chain (top-k, top-p, temperature, a seeded draw), in C.
"""

import ctypes
import random
from typing import Any

from .....types import SamplingParams
from .logits import logits_row


class ArgmaxSampler:
    def __init__(self, lib: Any, n_vocab: int):
        self._lib = lib
        self._n_vocab = n_vocab

    def sample(self, ctx: Any, idx: int) -> int:
        return int(logits_row(self._lib, ctx, idx, self._n_vocab).argmax())

    def free(self) -> None:
        return None


class ChainSampler:
    def __init__(self, lib: Any, chain: Any):
        self._lib = lib
        self._chain = chain

    def sample(self, ctx: Any, idx: int) -> int:
        return int(self._lib.llama_sampler_sample(self._chain, ctx, idx))

    def free(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None


def build_sampler(lib: Any, params: SamplingParams, n_vocab: int) -> Any:
    """A sampler with `sample(ctx, batch_index) -> token` and `free()`."""
    if params.temperature <= 0.0:
        return ArgmaxSampler(lib, n_vocab)
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if params.top_k > 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(ctypes.c_uint32(seed).value))
    return ChainSampler(lib, chain)
