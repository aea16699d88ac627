"""Per-request samplers for the llama.cpp scheduler, built from SamplingParams.

Each sequence in a batch gets its own sampler (own parameters, own seeded RNG, own
penalty history), so a request samples the same whatever else shares its batch.

Plain greedy decoding is an argmax over the sequence's logits row, done with numpy
in place: llama.cpp's sampler first copies the whole vocabulary (262k entries for
Gemma) into a candidate array, which costs more per step than the argmax itself.
Everything else runs as a llama.cpp sampler chain, in C. A request with an output
grammar (JSON, forced tool calls) has its row of logits masked before either runs
(guidance.py), so they only choose among tokens that keep the output valid.
"""

import ctypes
import random
from typing import Any, List, Sequence, Tuple

import numpy as np

from ....types import SamplingParams

# How many recent tokens the repetition/frequency/presence penalties look at.
PENALTY_LAST_N = 64


class ArgmaxSampler:
    def __init__(self, lib: Any, n_vocab: int, banned: Sequence[int]):
        self._lib = lib
        self._n_vocab = n_vocab
        self._banned = np.asarray(banned, dtype=np.int64)

    def sample(self, ctx: Any, idx: int) -> int:
        row = np.ctypeslib.as_array(self._lib.llama_get_logits_ith(ctx, idx), shape=(self._n_vocab,))
        if self._banned.size:
            row[self._banned] = -np.inf  # the row is ours until the next decode
        return int(row.argmax())

    def free(self) -> None:
        return None


class ChainSampler:
    def __init__(self, lib: Any, chain: Any):
        self._lib = lib
        self._chain = chain

    def sample(self, ctx: Any, idx: int) -> int:
        # Also feeds the token back into the chain (penalty history).
        return int(self._lib.llama_sampler_sample(self._chain, ctx, idx))

    def free(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)
            self._chain = None


def _penalized(params: SamplingParams) -> bool:
    return (
        params.repetition_penalty != 1.0
        or params.frequency_penalty != 0.0
        or params.presence_penalty != 0.0
    )


def build_sampler(lib: Any, params: SamplingParams, prompt_ids: List[int],
                  n_vocab: int, banned: Sequence[int] = ()) -> Any:
    """A sampler with `sample(ctx, batch_index) -> token` and `free()`."""
    if params.temperature <= 0.0 and not _penalized(params):
        return ArgmaxSampler(lib, n_vocab, banned)
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if banned:
        bias = (lib.llama_logit_bias * len(banned))()
        for i, tok in enumerate(banned):
            bias[i].token = tok
            bias[i].bias = float("-inf")
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_logit_bias(n_vocab, len(banned), bias))
    if _penalized(params):
        penalties: Tuple[float, ...] = (PENALTY_LAST_N, params.repetition_penalty,
                                        params.frequency_penalty, params.presence_penalty)
        # Builds of llama.cpp differ on whether this takes n_vocab first (0.3.36's does).
        if len(getattr(lib.llama_sampler_init_penalties, "argtypes", None) or ()) == 5:
            penalties = (n_vocab, *penalties)
        pen = lib.llama_sampler_init_penalties(*penalties)
        for tok in prompt_ids[-PENALTY_LAST_N:]:
            lib.llama_sampler_accept(pen, tok)
        lib.llama_sampler_chain_add(chain, pen)
    if params.temperature <= 0.0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return ChainSampler(lib, chain)
    if params.top_k > 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(ctypes.c_uint32(seed).value))
    return ChainSampler(lib, chain)
