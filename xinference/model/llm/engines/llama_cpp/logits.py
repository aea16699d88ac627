"""What happens to one sequence's row of llama.cpp logits before a sampler reads it.

In place, with numpy, on the row llama.cpp keeps for that sequence until the next
decode: banned tokens (ignore_eos), the repetition/frequency/presence penalties over the
last PENALTY_LAST_N tokens (prompt included, as llama.cpp counts them), logit_bias, the
output grammar's mask. Then the log-probabilities, if asked for, are read off the very
row the sampler chooses from. A sequence that asks for none of this skips it.
"""

from collections import Counter, deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .....types import SamplingParams
from ..guidance import Constraint
from ..logprobs import numpy_logprobs

# How many recent tokens the penalties look at.
PENALTY_LAST_N = 64


def penalized(params: SamplingParams) -> bool:
    return (params.repetition_penalty != 1.0 or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0)


class RowProcessor:
    def __init__(self, params: SamplingParams, prompt_ids: Sequence[int], banned: Sequence[int],
                 constraint: Optional[Constraint]):
        self._params = params
        self._banned = np.asarray(banned, dtype=np.int64)
        self._window: Optional[Deque[int]] = (
            deque(prompt_ids[-PENALTY_LAST_N:], maxlen=PENALTY_LAST_N) if penalized(params) else None)
        self._bias_ids = np.asarray(list(params.logit_bias), dtype=np.int64)
        self._bias = np.asarray(list(params.logit_bias.values()), dtype=np.float32)
        self.constraint = constraint
        self.top_k = params.logprobs  # None: no log-probabilities
        # a greedy row without log-probabilities needs the grammar's mask only when the
        # argmax is a token the grammar refuses (build_sampler's greedy test)
        self._check_argmax = constraint is not None and params.temperature <= 0.0 and params.logprobs is None
        self.needs_mask = constraint is not None and not self._check_argmax
        self.idle = (not self._banned.size and self._window is None and not self._bias.size
                     and constraint is None and self.top_k is None)

    def process(self, row: np.ndarray) -> None:
        if self._banned.size:
            row[self._banned] = -np.inf
        if self._window:
            self._penalize(row)
        if self._bias.size:
            row[self._bias_ids] += self._bias
        if self.constraint is not None:
            if self._check_argmax and self.constraint.allows(int(row.argmax())):
                return  # the greedy choice is one the grammar takes
            self.constraint.apply(row)

    def _penalize(self, row: np.ndarray) -> None:
        p = self._params
        counts: Dict[int, int] = Counter(self._window or ())
        ids = np.fromiter(counts, dtype=np.int64, count=len(counts))
        got = row[ids]
        if p.repetition_penalty != 1.0:
            got = np.where(got > 0, got / p.repetition_penalty, got * p.repetition_penalty)
        n = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        row[ids] = got - n * p.frequency_penalty - p.presence_penalty

    def logprobs(self, row: np.ndarray, token: int) -> Tuple[float, List[Tuple[int, float]]]:
        return numpy_logprobs(row, token, self.top_k or 0)

    def accept(self, token: int) -> None:
        if self._window is not None:
            self._window.append(token)
        if self.constraint is not None:
            self.constraint.accept(token)


def logits_row(lib: Any, ctx: Any, idx: int, n_vocab: int) -> np.ndarray:
    """A writable numpy view of llama.cpp's logits for batch position `idx`."""
    return np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, idx), shape=(n_vocab,))
