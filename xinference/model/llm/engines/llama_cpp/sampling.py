"""Per-request samplers for the llama.cpp scheduler, built from SamplingParams.

Each sequence in a batch gets its own sampler (own parameters, own seeded RNG), so a
request samples the same whatever else shares its batch. What changes the logits
first (bans, penalties, logit_bias, an output grammar) was done to the sequence's row
already (logits.py); a sampler only chooses from it.

Greedy decoding and top-k sampling read the row in place with numpy: llama.cpp's
sampler first copies the whole vocabulary (262k entries for Gemma) into a candidate
array, then sorts out the top k, which costs 0.3 ms a row, several times the numpy
work. The numpy draw keeps llama.cpp's order (top-k, top-p over the top k at
temperature 1, temperature, a seeded draw), so a request means what it meant under the
chain. Sampling from the whole vocabulary (top_k 0, or at least the vocabulary's size)
still runs as a llama.cpp sampler chain, in C: there the candidate array is the work.
"""

import ctypes
import random
from typing import Any

import numpy as np

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


# More candidates than this (or than 4 k) are narrowed down by another comparison over
# the row first.
_MOST_CANDIDATES = 4096
# Past this many nats below the best logit a token's weight is nil: a row that still has
# fewer than k candidates there has had the rest banned.
_WIDEST_REACH = 1000.0


class TopKSampler:
    """Top-k (then top-p, temperature) sampling with its own seeded generator."""

    def __init__(self, lib: Any, n_vocab: int, params: SamplingParams, seed: int):
        self._lib = lib
        self._n_vocab = n_vocab
        self._k = min(params.top_k, n_vocab)
        self._most = max(_MOST_CANDIDATES, 4 * self._k)
        self._top_p = params.top_p
        self._temperature = params.temperature
        self._rng = np.random.Generator(np.random.PCG64(seed))
        # how far below the best logit the top k reached last time: one comparison
        # over the row then finds a few more than k candidates, and only those are
        # partitioned, instead of the whole vocabulary
        self._reach = 8.0

    def sample(self, ctx: Any, idx: int) -> int:
        row = logits_row(self._lib, ctx, idx, self._n_vocab)
        ids = self._candidates(row)
        logits = row[ids]
        if ids.size > self._k:
            keep = np.argpartition(logits, -self._k)[-self._k:]
            ids, logits = ids[keep], logits[keep]
        order = np.argsort(-logits, kind="stable")
        ids, logits = ids[order], logits[order].astype(np.float64)
        if not np.isfinite(logits[0]):
            return int(ids[0])  # every token banned, or one forced by an infinite bias
        # fewer than k not banned: next time, one comparison keeps all that are not
        self._reach = 1.5 * float(logits[0] - logits[-1]) + 1e-3 if ids.size == self._k else np.inf
        if self._top_p < 1.0:
            p = np.exp(logits - logits[0])
            cum = np.cumsum(p / p.sum())
            n = int(np.searchsorted(cum, self._top_p)) + 1  # the smallest prefix reaching top_p
            ids, logits = ids[:n], logits[:n]
        p = np.exp((logits - logits[0]) / self._temperature)
        cum = np.cumsum(p)
        pick = int(np.searchsorted(cum, self._rng.random() * cum[-1], side="right"))
        return int(ids[min(pick, ids.size - 1)])

    def _candidates(self, row: np.ndarray) -> np.ndarray:
        """Indices of at least k tokens among which the top k are, and not many more:
        a nearly flat row puts most of the vocabulary within last time's reach, and
        partitioning that costs ten comparisons over the row. Fewer than k when fewer
        are not banned (an output grammar's mask): then all of those."""
        best = row.max()
        if not np.isfinite(best):  # all banned, a token forced by an infinite bias, a NaN
            return np.array([row.argmax()])
        few, many = 0.0, np.inf  # reaches known to find too few, too many
        reach = self._reach
        for _ in range(12):
            ids = np.flatnonzero(row > best - reach)
            if ids.size < self._k:
                if reach == np.inf:
                    return ids
                few = reach
                reach = reach * 8.0 if many == np.inf else (few + many) / 2.0
                if reach > _WIDEST_REACH:
                    reach = np.inf
            elif ids.size > self._most:
                many = reach
                reach = (few + many) / 2.0 if np.isfinite(many) else 8.0
            else:
                return ids
        # the bisection found no reach in between (many tokens tie at the k-th value)
        return ids if ids.size >= self._k else np.flatnonzero(row > -np.inf)

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
    seed = params.seed if params.seed is not None else random.getrandbits(32)
    if 0 < params.top_k < n_vocab:
        return TopKSampler(lib, n_vocab, params, seed)
    # top_k 0, or one that keeps the whole vocabulary (a huge top_k would have numpy sort it)
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    if params.top_p < 1.0:
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(params.top_p, 1))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(params.temperature))
    lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(ctypes.c_uint32(seed).value))
    return ChainSampler(lib, chain)
