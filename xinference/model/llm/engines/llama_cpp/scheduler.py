"""Continuous batching over one llama.cpp context.

A scheduler thread owns the context. Each step it
  1. drops sequences whose client went away,
  2. admits waiting requests into free slots (one KV sequence id per slot), choosing
     the slot whose cached tokens share the longest prefix with the prompt, so only
     the rest of the prompt is evaluated,
  3. builds one batch: the last sampled token of every running sequence, then prompt
     chunks of newly admitted ones up to `n_batch` tokens (a long prompt is spread
     over several steps instead of stalling the running streams; prompts that came
     together are spread over steps of shrinking size, PROMPT_TOKENS_PER_STEP),
  4. runs one `llama_decode` (which releases the GIL, so the event loop keeps going),
  5. samples every sequence that produced logits with its own sampler, and
     streams its text.
A slot keeps the tokens whose KV it holds after its request ends: the next turn of a
conversation re-sends the whole history and finds it already evaluated.

Choices of one prompt (n > 1) are admitted together (engines/admission.py). Only the
leader evaluates the prompt; the followers wait in their slots, and when the prompt's
logits come, the leader's KV is copied into theirs (llama_memory_seq_cp: across KV streams a
copy of the stream's buffers, done by llama.cpp at the start of the next decode) and
each samples its first token from the same row with its own sampler. A leader that
leaves before that hands its followers the prompt to evaluate themselves.
"""

import logging
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .....errors import XinferenceError
from .....types import GenerationDelta, SamplingParams
from ..admission import QueueSettings, SchedulerThread, Ticket
from ..guidance import compute_masks
from ..logprobs import entry
from ..text_stream import TextStream
from .logits import RowProcessor, logits_row
from .sampling import build_sampler

logger = logging.getLogger(__name__)

# Prompts that wait together (a wave of requests) are not all evaluated in one step:
# a sequence's first token comes only when its whole prompt is in, and a step's cost
# grows with its prompt tokens, so one long step would make every one of them wait
# for all. Each step takes prompts (oldest first) until it holds half of the waiting
# prompt tokens: the first half starts streaming while the rest is evaluated, in
# steps that shrink, which is how batches with a fixed cost per step are best sized
# for the mean wait. Prompts go together until they hold PROMPT_TOKENS_PER_STEP; a
# long prompt first in line still gets the whole batch (n_batch).
PROMPT_TOKENS_PER_STEP = 32


class _Seq:
    """A request running in a slot."""

    def __init__(self, ticket: Ticket, prompt: List[int], params: SamplingParams,
                 sampler: Any, text: TextStream, cached: int, shown: Dict[int, bytes],
                 rows: RowProcessor):
        self.ticket = ticket
        self.prompt = prompt
        self.params = params
        self.sampler = sampler
        self.text = text
        self.cached = cached
        self.pending = prompt[cached:]  # prompt tokens not evaluated yet
        self.next_token: Optional[int] = None  # sampled, to be evaluated next step
        self.produced = 0
        self.stop_ids = set(params.stop_token_ids)
        self.shown = shown  # special tokens this request's output shows as text
        self.rows = rows  # what is done to its logits before sampling
        # slots of the other choices of this prompt, waiting for its KV (leader only)
        self.followers: List[_Slot] = []


class _Slot:
    def __init__(self, seq_id: int):
        self.seq_id = seq_id
        self.tokens: List[int] = []  # whose KV this slot holds, position by position
        self.seq: Optional[_Seq] = None
        self.last_used = 0.0


def common_prefix(a: List[int], b: List[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaScheduler(SchedulerThread):
    engine = "llama.cpp"

    def __init__(
        self,
        lib: Any,
        model: Any,
        ctx: Any,
        n_parallel: int,
        n_batch: int,
        queue: QueueSettings,
        eog_tokens: List[int],
        piece: Callable[[int], bytes],
        special_id: Callable[[str], Optional[int]],
    ):
        self._lib = lib
        self._model = model
        self._ctx = ctx
        self._mem = lib.llama_get_memory(ctx)
        self._vocab = lib.llama_model_get_vocab(model)
        self._vocab_size = lib.llama_vocab_n_tokens(self._vocab)
        self._n_swa = int(lib.llama_model_n_swa(model))
        self._n_batch = n_batch
        self._eog = frozenset(eog_tokens)
        self._eog_banned = sorted(self._eog)
        self._piece = piece
        self._special_id = special_id
        self._slots = [_Slot(i) for i in range(n_parallel)]
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        super().__init__(n_parallel, queue)
        self.start()

    # -- event-loop side ---------------------------------------------------------

    def stop(self) -> None:
        super().stop()
        self._lib.llama_batch_free(self._batch)

    def _busy(self) -> int:
        return sum(1 for s in self._slots if s.seq is not None)

    # -- scheduler thread ----------------------------------------------------------

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.seq is not None and slot.seq.ticket.cancelled:
                self._release(slot)

    def _admit(self, tickets: List[Ticket]) -> None:
        free = [s for s in self._slots if s.seq is None]
        for ticket in tickets:
            prompt = ticket.request[0]
            # Longest shared prefix first; among equals the least recently used, so
            # a conversation's cache lives as long as possible.
            slot = max(free, key=lambda s: (common_prefix(s.tokens, prompt), -s.last_used))
            free.remove(slot)
            try:
                self._start(slot, ticket)
            except Exception as e:  # noqa: BLE001 - the request fails, not the replica
                logger.exception("could not start a request")
                ticket.fail(e if isinstance(e, XinferenceError) else XinferenceError(str(e)))
                self._release(slot)
                continue
            leader = slot.seq
            assert leader is not None
            for follower in ticket.followers:
                if follower.cancelled:
                    continue
                # the least recently used slot: its cache is the least likely to be asked for
                other = min(free, key=lambda s: s.last_used)
                free.remove(other)
                self._start(other, follower, evaluate=False)
                leader.followers.append(other)

    def _start(self, slot: _Slot, ticket: Ticket, evaluate: bool = True) -> None:
        """Starts a request in `slot`; a follower (`evaluate` False) waits for its
        leader's KV instead of evaluating the prompt."""
        lib = self._lib
        prompt, params, constraint = ticket.request
        keep = common_prefix(slot.tokens, prompt) if evaluate else 0
        # The last prompt token is always evaluated: its logits give the first token.
        keep = min(keep, len(prompt) - 1)
        if keep < len(slot.tokens):
            if keep > 0 and self._n_swa > 0:
                # A sliding-window cache forgets old positions: continuing at `keep`
                # needs the window before it.
                pos_min = lib.llama_memory_seq_pos_min(self._mem, slot.seq_id)
                if pos_min > max(0, keep - self._n_swa):
                    keep = 0
            if not lib.llama_memory_seq_rm(self._mem, slot.seq_id, keep, -1):
                keep = 0
                lib.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            del slot.tokens[keep:]
        banned = self._eog_banned if params.ignore_eos else ()
        sampler = build_sampler(lib, params, self._vocab_size)
        rows = RowProcessor(params, prompt, banned, constraint)
        text = TextStream(ticket.emit, params.stop, self._pace)
        shown = {t: mark.encode("utf-8") for mark in params.keep_special
                 if (t := self._special_id(mark)) is not None}
        slot.seq = _Seq(ticket, prompt, params, sampler, text, keep, shown, rows)
        if not evaluate:
            slot.seq.pending = []

    def _advance(self) -> None:
        """One llama_decode: the next token of every running sequence, and prompt
        chunks of new ones."""
        lib = self._lib
        batch = self._batch
        n = 0
        sample_at: List[tuple] = []  # (slot, batch index)
        fed: List[tuple] = []  # (slot, tokens added to the KV by this step, from the prompt?)

        def add(slot: _Slot, token: int, pos: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = pos
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq_id
            batch.logits[n] = logits
            n += 1

        running = [s for s in self._slots if s.seq is not None]
        for slot in running:
            seq = slot.seq
            assert seq is not None
            if seq.next_token is not None:
                add(slot, seq.next_token, len(slot.tokens), True)
                sample_at.append((slot, n - 1))
                fed.append((slot, [seq.next_token], False))
        # Prompts: oldest request first, in chunks that fit what is left of the batch,
        # until the step holds half of what waits (PROMPT_TOKENS_PER_STEP).
        waiting = sorted(
            (s for s in running if s.seq is not None and s.seq.pending),
            key=lambda s: s.seq.ticket.enqueued,  # type: ignore[union-attr]
        )
        waiting_tokens = sum(len(s.seq.pending) for s in waiting if s.seq is not None)
        budget = max(PROMPT_TOKENS_PER_STEP, (waiting_tokens + 1) // 2)
        prompt_tokens = 0
        for slot in waiting:
            seq = slot.seq
            assert seq is not None
            room = self._n_batch - n
            if room <= 0 or prompt_tokens >= budget:
                break
            chunk = seq.pending[:room]
            prompt_tokens += len(chunk)
            last = len(chunk) == len(seq.pending)
            base = len(slot.tokens)
            for i, tok in enumerate(chunk):
                add(slot, tok, base + i, last and i == len(chunk) - 1)
            if last:
                sample_at.append((slot, n - 1))
            fed.append((slot, chunk, True))
        if n == 0:
            return
        batch.n_tokens = n
        rc = lib.llama_decode(self._ctx, batch)
        if rc != 0:
            self._decode_failed(rc, [f[0] for f in fed])
            return
        for slot, tokens, from_prompt in fed:
            slot.tokens.extend(tokens)
            seq = slot.seq
            assert seq is not None
            if from_prompt:
                del seq.pending[: len(tokens)]
            else:
                seq.next_token = None
        compute_masks([slot.seq.rows.constraint for slot, _ in sample_at  # type: ignore[misc]
                       if slot.seq is not None and slot.seq.rows.needs_mask])
        for slot, idx in sample_at:
            seq = slot.seq
            assert seq is not None
            followers, seq.followers = seq.followers, []
            raw = logits_row(lib, self._ctx, idx, self._vocab_size).copy() if followers else None
            self._sample(slot, seq, idx)
            if raw is not None:
                self._fork(slot, followers, idx, raw)

    def _sample(self, slot: _Slot, seq: _Seq, idx: int) -> None:
        row = None
        if not seq.rows.idle:  # the sampler reads the row after this
            row = logits_row(self._lib, self._ctx, idx, self._vocab_size)
            seq.rows.process(row)
        token = seq.sampler.sample(self._ctx, idx)
        logprob = None
        if row is not None and seq.rows.top_k is not None:
            lp, top = seq.rows.logprobs(row, token)
            logprob = entry(token, lp, top, self._piece)
        self._accept(slot, seq, token, logprob)

    def _fork(self, leader: _Slot, followers: List[_Slot], idx: int, raw: np.ndarray) -> None:
        """The leader's prompt is evaluated: its KV goes to each follower's slot, and each
        samples its first token from the prompt's logits (`raw`, as they came)."""
        lib = self._lib
        row = logits_row(lib, self._ctx, idx, self._vocab_size)
        for slot in followers:
            seq = slot.seq
            if seq is None:  # left already
                continue
            lib.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
            lib.llama_memory_seq_cp(self._mem, leader.seq_id, slot.seq_id, -1, -1)
            slot.tokens = list(leader.tokens)
            seq.cached = len(seq.prompt)
            np.copyto(row, raw)  # as the leader's sampling found it
            self._sample(slot, seq, idx)

    def _accept(self, slot: _Slot, seq: _Seq, token: int, logprob: Optional[Dict[str, Any]]) -> None:
        params = seq.params
        if token in seq.stop_ids or (not params.ignore_eos and token in self._eog):
            self._finish(slot, "stop")
            return
        seq.produced += 1
        seq.rows.accept(token)
        constraint = seq.rows.constraint
        if seq.text.feed(seq.shown.get(token) or self._piece(token), logprob):
            self._finish(slot, "stop")
        elif constraint is not None and constraint.done:  # nothing may follow
            self._finish(slot, "stop")
        elif params.max_tokens is not None and seq.produced >= params.max_tokens:
            self._finish(slot, "length")
        else:
            seq.next_token = token

    def _finish(self, slot: _Slot, reason: str) -> None:
        seq = slot.seq
        assert seq is not None
        seq.text.finish(
            GenerationDelta(
                finish_reason=reason,  # type: ignore[arg-type]
                prompt_tokens=len(seq.prompt),
                completion_tokens=seq.produced,
                cached_tokens=seq.cached,
            )
        )
        self._release(slot)

    def _release(self, slot: _Slot) -> None:
        seq = slot.seq
        if seq is not None:
            seq.sampler.free()
            slot.seq = None
            for other in seq.followers:  # they must evaluate the prompt themselves now
                if other.seq is not None:
                    other.seq.pending = list(other.seq.prompt)
                    other.seq.cached = 0
        slot.last_used = time.monotonic()

    def _decode_failed(self, rc: int, slots: List[_Slot]) -> None:
        logger.error("llama_decode returned %d for %d sequences", rc, len(slots))
        err = XinferenceError(f"llama.cpp could not evaluate the batch (llama_decode returned {rc}).")
        for slot in slots:
            self._forget(slot)
            if slot.seq is not None:
                slot.seq.ticket.emit(err)
                self._release(slot)

    def _forget(self, slot: _Slot) -> None:
        self._lib.llama_memory_seq_rm(self._mem, slot.seq_id, -1, -1)
        slot.tokens.clear()

    def _admitted(self) -> List[Ticket]:
        return [slot.seq.ticket for slot in self._slots if slot.seq is not None]

    def _reset(self) -> None:
        for slot in self._slots:
            self._forget(slot)
            if slot.seq is not None:
                self._release(slot)
