"""Per-request llama.cpp sampler chains, built from SamplingParams.

Each sequence in a batch gets its own chain (own parameters, own seeded RNG, own
penalty history), so a request samples the same whatever else shares its batch.
Sampling runs in C on the logits row of the sequence's last token.
"""

import ctypes
import random
from typing import Any, Iterable, List

from ....types import SamplingParams

# How many recent tokens the repetition/frequency/presence penalties look at.
PENALTY_LAST_N = 64


def build_sampler(llama_cpp: Any, params: SamplingParams, prompt_ids: List[int],
                  n_vocab: int, banned: Iterable[int] = ()) -> Any:
    """A sampler chain; the caller frees it with `llama_sampler_free`."""
    lib = llama_cpp
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    banned = list(banned)
    if banned:
        bias = (lib.llama_logit_bias * len(banned))()
        for i, tok in enumerate(banned):
            bias[i].token = tok
            bias[i].bias = float("-inf")
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_logit_bias(n_vocab, len(banned), bias))
    if (
        params.repetition_penalty != 1.0
        or params.frequency_penalty != 0.0
        or params.presence_penalty != 0.0
    ):
        pen = lib.llama_sampler_init_penalties(
            PENALTY_LAST_N,
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )
        for tok in prompt_ids[-PENALTY_LAST_N:]:
            lib.llama_sampler_accept(pen, tok)
        lib.llama_sampler_chain_add(chain, pen)
    if params.temperature <= 0.0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        return chain
    if params.top_k > 0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(ctypes.c_uint32(seed).value))
    return chain
