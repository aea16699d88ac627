"""One vLLM request's output on its way to the client: text and log-probabilities.

vLLM hands each request its new tokens step by step (DELTA outputs); when our loop falls
behind, its output collector merges several steps into one, so a step may hold several
tokens, their text as one string, and one log-probability dict per token. Stop strings
are matched here (`StopMatcher`), which may hold text back; a token's log-probability
entry travels with the text it stands for, as in `TextStream` (the other engines), so
a delta carries the entries of the tokens whose text it brings. Entries whose text is
still held back (a possible stop string, or an incomplete character vLLM's detokenizer
keeps) wait for it.

Nothing here imports vllm: a step is duck-typed (`token_ids`, `text`, `logprobs`,
`finish_reason`), and so is each vLLM `Logprob` (`logprob`, `rank`, `decoded_token`).
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..logprobs import entry
from ..text_stream import StopMatcher


def step_entries(step: Any, k: int, decode: Callable[[int], str]) -> List[Dict[str, Any]]:
    """The log-probability entries of a step's tokens. A step that vLLM ended with
    "stop" ended on an end-of-generation or stop token (we give vLLM no stop strings):
    that token is no part of the output (vLLM leaves its text out too), so it has no
    entry, as on the other engines."""
    tokens: Sequence[int] = step.token_ids
    dicts: Sequence[Mapping[int, Any]] = step.logprobs or []
    if step.finish_reason == "stop" and tokens:
        tokens = tokens[:-1]
    return [_entry(t, d, k, decode) for t, d in zip(tokens, dicts)]


def _entry(token: int, lps: Mapping[int, Any], k: int, decode: Callable[[int], str]) -> Dict[str, Any]:
    # vLLM's dict holds the sampled token (with its rank in the vocabulary) and the
    # top k (ranks 1..k; the sampled one among them when it is one of them)
    top: List[Tuple[int, float]] = [
        (t, lp.logprob) for t, lp in sorted(
            ((t, lp) for t, lp in lps.items() if lp.rank is not None and lp.rank <= k),
            key=lambda item: (item[1].rank, -item[1].logprob))][:k]

    def piece(t: int) -> bytes:
        # vLLM decoded each of these tokens already (leading spaces kept)
        got = lps.get(t)
        text = got.decoded_token if got is not None and got.decoded_token is not None else decode(t)
        return text.encode("utf-8")

    return entry(token, lps[token].logprob, top, piece)


class PendingOutput:
    """Text released by the stop matcher and the log-probability entries that go with
    it, until the engine sends them as one delta."""

    def __init__(self, stops: List[str], logprobs: Optional[int], decode: Callable[[int], str]):
        self._matcher = StopMatcher(stops)
        self._k = logprobs  # None: no log-probabilities asked for
        self._decode = decode
        self.text = ""
        self.logprobs: List[Dict[str, Any]] = []
        self._waiting: List[Dict[str, Any]] = []  # entries whose text is held back

    def feed(self, step: Any) -> bool:
        """Adds one vLLM step; True when a stop string was produced (the text ends
        before it)."""
        if self._k is not None:
            self._waiting += step_entries(step, self._k, self._decode)
        text, hit = self._matcher.feed(step.text)
        self.text += text
        if text or hit:
            # the tokens that made a stop string keep their entries, as in TextStream
            self.logprobs += self._waiting
            self._waiting = []
        return hit

    def finish(self, hit: bool) -> None:
        """The request ended: whatever was held back is released (unless the text
        ended at a stop string)."""
        if not hit:
            self.text += self._matcher.flush()
        self.logprobs += self._waiting
        self._waiting = []

    def take(self) -> Tuple[str, List[Dict[str, Any]]]:
        out = self.text, self.logprobs
        self.text, self.logprobs = "", []
        return out
