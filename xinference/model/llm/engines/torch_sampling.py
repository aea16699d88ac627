"""Per-sequence sampling over a batch of logits (PyTorch).

Each running sequence has its own parameters, so one step may mix greedy and sampled
rows, penalties, seeds and banned tokens. Rows that need nothing but the argmax share
one batched argmax; the others are sampled one by one (a batch holds at most a few
dozen rows, and top-k first keeps each row's work small even for 256k vocabularies).
"""

from typing import Dict, List, Optional, Sequence

import torch

from ....types import SamplingParams
from .guidance import Constraint


class RowSampler:
    """One sequence's sampling state: its parameters, generator and token counts."""

    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], banned: Sequence[int],
                 constraint: Optional[Constraint] = None):
        self.params = params
        self.constraint = constraint  # the grammar the output follows, if any
        self.greedy = params.temperature <= 1e-5
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
                and self.constraint is None)

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
        if self.banned is not None or self._rep or self._pen or self.constraint is not None:
            logits = logits.clone()
        if self.constraint is not None:
            bias = torch.from_numpy(self.constraint.bias(logits.shape[-1]))
            logits += bias.to(device=logits.device, dtype=logits.dtype)
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


def sample(logits: torch.Tensor, rows: Sequence[RowSampler]) -> List[int]:
    """One token per row of `logits` ([rows, vocab])."""
    out: List[int] = [0] * len(rows)
    plain = [i for i, r in enumerate(rows) if r.plain_argmax]
    if plain:
        best = torch.argmax(logits[plain] if len(plain) < len(rows) else logits, dim=-1).tolist()
        for i, t in zip(plain, best):
            out[i] = t
    if len(plain) < len(rows):
        rest = logits.float()
        for i, row in enumerate(rows):
            if not row.plain_argmax:
                out[i] = row.pick(rest[i])
    return out
