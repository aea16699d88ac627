"""The llama.cpp engine's numpy top-k sampler draws from the distribution llama.cpp's
sampler chain defines (top-k, then top-p at temperature 1, then temperature), whatever
the scale of the logits, and reproducibly for a seed."""

import ctypes

import numpy as np
import pytest

from xinference.model.llm.engines.llama_cpp.sampling import ChainSampler, TopKSampler, build_sampler
from xinference.types import SamplingParams


class _Logits:
    """Stands in for llama.cpp's library: one row of logits at batch index 0."""

    def __init__(self, row: np.ndarray):
        self.row = np.ascontiguousarray(row, dtype=np.float32)

    def llama_get_logits_ith(self, ctx, idx):
        return self.row.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def _expected(row: np.ndarray, k: int, top_p: float, temperature: float) -> np.ndarray:
    order = np.argsort(-row.astype(np.float64), kind="stable")[:k]
    top = row[order].astype(np.float64)
    if top_p < 1.0:
        p = np.exp(top - top.max())
        p /= p.sum()
        n = int(np.argmax(np.cumsum(p) >= top_p)) + 1
        order, top = order[:n], top[:n]
    p = np.exp((top - top.max()) / temperature)
    out = np.zeros(row.size)
    out[order] = p / p.sum()
    return out


@pytest.mark.parametrize("scale,k,top_p,temperature", [
    (1.0, 40, 1.0, 0.8),
    (3.0, 40, 0.9, 0.8),
    (30.0, 5, 0.95, 1.5),   # logits far apart: the first reach finds too few candidates
    (0.01, 40, 1.0, 1.0),   # logits close together: the first reach finds the whole row
])
def test_draws_follow_the_chain_distribution(scale, k, top_p, temperature):
    rng = np.random.default_rng(7)
    row = rng.standard_normal(5000) * scale
    row[rng.integers(0, row.size, 20)] += 4 * scale
    lib = _Logits(row)
    sampler = TopKSampler(lib, row.size, SamplingParams(temperature=temperature, top_k=k, top_p=top_p), seed=1)
    n = 20000
    counts = np.bincount([sampler.sample(None, 0) for _ in range(n)], minlength=row.size)
    expected = _expected(lib.row, k, top_p, temperature)
    assert counts[expected == 0].sum() == 0  # never a token outside the top k / top p
    assert 0.5 * np.abs(counts / n - expected).sum() < 0.03  # total variation distance


def test_a_seed_draws_the_same_tokens_and_another_seed_others():
    row = np.random.default_rng(3).standard_normal(3000)
    params = SamplingParams(temperature=1.0, top_k=40)

    def draws(seed):
        sampler = TopKSampler(_Logits(row), row.size, params, seed)
        return [sampler.sample(None, 0) for _ in range(50)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


def test_banned_tokens_are_never_drawn():
    row = np.random.default_rng(4).standard_normal(1000)
    banned = np.argsort(-row)[:10]  # the ten best
    row[banned] = -np.inf
    sampler = TopKSampler(_Logits(row), row.size, SamplingParams(temperature=2.0, top_k=40), seed=2)
    drawn = {sampler.sample(None, 0) for _ in range(2000)}
    assert not drawn & set(banned.tolist())
    assert len(drawn) > 20


def test_fewer_finite_tokens_than_k_draws_among_those():
    row = np.full(500, -np.inf)
    row[[3, 9, 27]] = [1.0, 2.0, 3.0]
    sampler = TopKSampler(_Logits(row), row.size, SamplingParams(temperature=1.0, top_k=40), seed=3)
    assert {sampler.sample(None, 0) for _ in range(500)} == {3, 9, 27}


def test_a_grammar_mask_leaving_few_tokens_costs_one_comparison_per_draw(monkeypatch):
    """Once a row had fewer than k tokens left, the next draw keeps every token that is
    not banned with one comparison, rather than widening its reach pass after pass."""
    row = np.full(5000, -np.inf)
    allowed = [11, 12, 400]
    row[allowed] = [0.5, 2.0, 1.0]
    sampler = TopKSampler(_Logits(row), row.size, SamplingParams(temperature=1.0, top_k=40), seed=4)
    sampler.sample(None, 0)
    passes = []
    real = np.flatnonzero
    monkeypatch.setattr(np, "flatnonzero", lambda a: passes.append(1) or real(a))
    assert all(sampler.sample(None, 0) in allowed for _ in range(20))
    assert len(passes) == 20


def test_an_infinite_bias_forces_its_token_and_a_nan_row_does_not_raise():
    row = np.zeros(100)
    row[42] = np.inf
    sampler = TopKSampler(_Logits(row), row.size, SamplingParams(temperature=1.0, top_k=40), seed=5)
    assert {sampler.sample(None, 0) for _ in range(50)} == {42}
    row = np.zeros(100)
    row[7] = np.nan
    sampler = TopKSampler(_Logits(row), row.size, SamplingParams(temperature=1.0, top_k=40), seed=5)
    assert 0 <= sampler.sample(None, 0) < 100


class _ChainLib:
    """Records the llama.cpp samplers a chain is built from."""

    def __init__(self):
        self.added = []

    def __getattr__(self, name):
        if name.startswith("llama_sampler_init_"):
            return lambda *a: name[len("llama_sampler_init_"):]
        if name == "llama_sampler_chain_add":
            return lambda chain, smpl: self.added.append(smpl)
        return lambda *a: name


@pytest.mark.parametrize("top_k", [0, 1000, 10**30])
def test_a_top_k_keeping_the_whole_vocabulary_samples_in_llama_cpp(top_k):
    """Such a top-k cuts nothing, and numpy would sort the whole row for it every step."""
    lib = _ChainLib()
    sampler = build_sampler(lib, SamplingParams(temperature=0.7, top_k=top_k, top_p=0.9, seed=1), 1000)
    assert isinstance(sampler, ChainSampler)
    assert lib.added == ["top_p", "temp", "dist"]
    assert isinstance(build_sampler(lib, SamplingParams(temperature=0.7, top_k=999), 1000), TopKSampler)
