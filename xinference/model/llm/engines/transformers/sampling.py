"""Per-sequence sampling over a batch of logits (PyTorch).

Each running sequence has its own parameters, so one step may mix greedy and sampled
rows, penalties, seeds and banned tokens. Rows that need nothing but the argmax share
one batched argmax; the others are sampled one by one (a batch holds at most a few
dozen rows, and top-k first keeps each row's work small even for 256k vocabularies).
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .....types import SamplingParams
from ..guidance import Constraint, compute_masks


class RowSampler:
    """One sequence's sampling state: its parameters, generator and token counts."""

    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], banned: Sequence[int],
                 constraint: Optional[Constraint] = None):
        self.params = params
        self.constraint = constraint  # the grammar the output follows, if any
        self._bias_ids = torch.tensor(list(params.logit_bias), dtype=torch.long) if params.logit_bias else None
        self._bias = torch.tensor(list(params.logit_bias.values())) if params.logit_bias else None
        # (logprob, [(id, logprob)]) of the token pick() chose, with SamplingParams.logprobs
        self.last_logprobs: Optional[Tuple[float, List[Tuple[int, float]]]] = None
        self.greedy = params.temperature <= 1e-5
        # the grammar's whole mask is needed unless the row is greedy without
        # log-probabilities: then only when its argmax is a token the grammar refuses
        self.needs_mask = constraint is not None and not (self.greedy and params.logprobs is None)
        self.banned = torch.tensor(sorted(set(banned)), dtype=torch.long) if banned else None
        self._rep = params.repetition_penalty != 1.0
        self._pen = params.presence_penalty != 0.0 or params.frequency_penalty != 0.0
        # Repetition penalty looks at the prompt too (as Hugging Face does); presence
        # and frequency penalties only at the completion (as OpenAI does).
        self._seen = set(prompt_ids) if self._rep else set()
        self._counts: Dict[int, int] = {}
        self.generator: Optional[torch.Generator] = None
        if not self.greedy and params.seed is not None:
            self.generator = torch.Generator().manual_seed(int(params.seed))

    @property
    def plain_argmax(self) -> bool:
        return (self.greedy and not self._rep and not self._pen and self.banned is None
                and self.constraint is None and self._bias is None and self.params.logprobs is None)

    def accept(self, token: int) -> None:
        if self.constraint is not None:
            self.constraint.accept(token)
        if self._rep:
            self._seen.add(token)
        if self._pen:
            self._counts[token] = self._counts.get(token, 0) + 1

    def pick(self, logits: torch.Tensor) -> int:
        """A token from one row of logits (float32, on CPU or the model's device)."""
        p = self.params
        if (self.banned is not None or self._rep or self._pen or self.constraint is not None
                or self._bias is not None):
            logits = logits.clone()  # the batch's row is not ours to change
        if self.banned is not None:
            logits[self.banned.to(logits.device)] = float("-inf")
        if self._rep and self._seen:
            ids = torch.tensor(list(self._seen), device=logits.device)
            got = logits[ids]
            logits[ids] = torch.where(got > 0, got / p.repetition_penalty, got * p.repetition_penalty)
        if self._pen and self._counts:
            ids = torch.tensor(list(self._counts), device=logits.device)
            counts = torch.tensor(list(self._counts.values()), dtype=logits.dtype, device=logits.device)
            logits[ids] -= p.frequency_penalty * counts + p.presence_penalty
        if self._bias is not None and self._bias_ids is not None:
            logits[self._bias_ids.to(logits.device)] += self._bias.to(logits.device, logits.dtype)
        if self.constraint is not None:
            # a greedy row whose argmax the grammar takes needs no mask
            if self.needs_mask or not self.constraint.allows(int(torch.argmax(logits))):
                allowed = torch.from_numpy(self.constraint.allowed(logits.shape[-1]))
                logits.masked_fill_(~allowed.to(logits.device), float("-inf"))
        token = self._choose(logits)
        if p.logprobs is not None:
            self.last_logprobs = _logprobs(logits, token, p.logprobs)
        return token

    def _choose(self, logits: torch.Tensor) -> int:
        p = self.params
        if self.greedy:
            return int(torch.argmax(logits))
        k = p.top_k if 0 < p.top_k < logits.shape[-1] else logits.shape[-1]
        top, idx = torch.topk(logits, k)
        probs = torch.softmax(top / p.temperature, dim=-1)
        if p.top_p < 1.0:
            # keep the smallest head whose mass reaches top_p (always at least one)
            cum = torch.cumsum(probs, dim=-1)
            probs = probs.masked_fill(cum - probs >= p.top_p, 0.0)
        choice = torch.multinomial(probs, 1, generator=self.generator)
        return int(idx[choice])


def _logprobs(logits: torch.Tensor, token: int, k: int) -> Tuple[float, List[Tuple[int, float]]]:
    """log-softmax of the processed row at `token`, and its top `k` (see logprobs.py)."""
    lsm = torch.log_softmax(logits.float(), dim=-1)
    top: List[Tuple[int, float]] = []
    if k > 0:
        values, idx = torch.topk(lsm, min(k, lsm.shape[-1]))
        top = list(zip(idx.tolist(), values.tolist()))
    return float(lsm[token]), top


def sample(logits: torch.Tensor, rows: Sequence[RowSampler]) -> List[int]:
    """One token per row of `logits` ([rows, vocab])."""
    out: List[int] = [0] * len(rows)
    plain = [i for i, r in enumerate(rows) if r.plain_argmax]
    if plain:
        best = torch.argmax(logits[plain] if len(plain) < len(rows) else logits, dim=-1).tolist()
        for i, t in zip(plain, best):
            out[i] = t
    if len(plain) < len(rows):
        compute_masks([r.constraint for r in rows if r.constraint is not None and r.needs_mask])
        rest = logits.float()
        for i, row in enumerate(rows):
            if not row.plain_argmax:
                out[i] = row.pick(rest[i])
    return out
