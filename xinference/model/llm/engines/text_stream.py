"""Turning one sequence's sampled tokens into streamed text.

Shared by every engine: bytes are decoded incrementally (a CJK character or an emoji
may span several tokens), text that might be the start of a stop string is held back,
and pieces are coalesced so that a fast decoder does not wake the serving path for
every token.
"""

import codecs
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from ....types import GenerationDelta

MAX_STREAM_INTERVAL = 0.25


def paced_interval(interval: float, busy: int) -> float:
    """Seconds between two pieces of one stream when `busy` streams run. Every piece
    costs an RPC and an SSE write on the CPU the decoder needs: with more streams each
    one is sent a little less often, so the total rate of pieces stays about the same."""
    return min(MAX_STREAM_INTERVAL, interval * max(1.0, busy / 2))


class StopMatcher:
    """Holds back text that might be the start of a stop string."""

    def __init__(self, stops: List[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> Tuple[str, bool]:
        if not self.stops:
            return piece, False
        self.pending += piece
        cut = min(
            (i for i in (self.pending.find(s) for s in self.stops) if i >= 0),
            default=-1,
        )
        if cut >= 0:
            self.hit = True
            text, self.pending = self.pending[:cut], ""
            return text, True
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:n]):
                    keep = max(keep, n)
                    break
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return text, False

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text


class Coalescer:
    """Hands text on at most every `interval` seconds.

    Each hand-off wakes the replica's loop, an RPC and the REST process; on a small
    machine those wake-ups steal time from the decoder's own threads. The first piece
    goes out at once, so time-to-first-token is unchanged. `interval` may be a callable,
    read at each piece, so the pace can follow the load.
    """

    def __init__(self, emit: Callable[[GenerationDelta], None],
                 interval: Union[float, Callable[[], float]]):
        self._emit = emit
        self._interval = interval if callable(interval) else (lambda: interval)
        self._buf = ""
        # log-probabilities of the tokens whose text is in _buf (or still held back):
        # they travel with the text they stand for
        self._logprobs: List[Dict[str, Any]] = []
        self._last: Optional[float] = None

    def add(self, text: str, logprob: Optional[Dict[str, Any]] = None) -> None:
        if logprob is not None:
            self._logprobs.append(logprob)
        if not text:
            return
        self._buf += text
        now = time.monotonic()
        if self._last is None or now - self._last >= self._interval():
            self._emit(GenerationDelta(text=self._buf, logprobs=self._logprobs))
            self._buf = ""
            self._logprobs = []
            self._last = now

    def finish(self, last: GenerationDelta) -> None:
        last.text = self._buf + last.text
        last.logprobs = self._logprobs + last.logprobs
        self._buf = ""
        self._logprobs = []
        self._emit(last)


class TextStream:
    """One sequence's output: feed it token bytes, it emits deltas; `finish` ends it.

    `feed` returns True once a stop string was produced: the sequence is over.
    """

    def __init__(self, emit: Callable[[GenerationDelta], None], stops: List[str],
                 interval: Union[float, Callable[[], float]]):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(stops)
        self._out = Coalescer(emit, interval)

    def feed(self, piece: bytes, logprob: Optional[Dict[str, Any]] = None) -> bool:
        """`logprob`: the token's log-probability entry, sent with its text."""
        text, hit = self._stops.feed(self._decoder.decode(piece))
        self._out.add(text, logprob)
        return hit

    def finish(self, last: GenerationDelta) -> None:
        if not self._stops.hit:
            self._out.add(self._stops.flush() + self._decoder.decode(b"", final=True))
        self._out.finish(last)
