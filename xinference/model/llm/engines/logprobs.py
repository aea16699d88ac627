"""Log-probabilities as the API reports them: per generated token its text, bytes and
log-probability, and the most likely alternatives at that step.

The values are the log-softmax of the logits the sampler chose from, after penalties,
logit_bias and any output grammar, before temperature and top-k/top-p truncation: what
the model (as asked) gave each token, not the sampler's reshaped distribution.
"""

import math
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from ....errors import InvalidRequestError

# OpenAI's bounds: top_logprobs 0-20 for chat, logit_bias values -100 to 100.
MAX_TOP_LOGPROBS = 20


def entry(token: int, logprob: float, top: Sequence[Tuple[int, float]],
          piece: Callable[[int], bytes]) -> Dict[str, Any]:
    """One generated token's entry; alternatives the grammar or a ban ruled out (-inf)
    are left out, as JSON has no -inf."""

    def one(t: int, lp: float) -> Dict[str, Any]:
        raw = piece(t)
        return {"token": raw.decode("utf-8", "replace"), "bytes": list(raw), "logprob": float(lp)}

    return {**one(token, max(logprob, -9999.0)),
            "top": [one(t, lp) for t, lp in top if math.isfinite(lp)]}


def check_logit_bias(bias: Mapping[int, float], n_vocab: int) -> None:
    bad = [t for t in bias if not 0 <= t < n_vocab]
    if bad:
        raise InvalidRequestError(
            f"logit_bias names token {bad[0]}, which is not in this model's vocabulary "
            f"(ids 0 to {n_vocab - 1}).", param="logit_bias")


def numpy_logprobs(row: Any, token: int, k: int) -> Tuple[float, List[Tuple[int, float]]]:
    """log-softmax of `row` (a float32 numpy row) at `token`, and its top `k`."""
    import numpy as np

    peak = float(row.max())
    lse = peak + math.log(float(np.exp(row - peak, dtype=np.float64).sum()))
    top: List[Tuple[int, float]] = []
    if k > 0:
        k = min(k, row.shape[0])
        idx = np.argpartition(-row, k - 1)[:k]
        idx = idx[np.argsort(-row[idx], kind="stable")]
        top = [(int(i), float(row[i]) - lse) for i in idx]
    return float(row[token]) - lse, top
