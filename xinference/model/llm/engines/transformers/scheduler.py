"""Continuous batching for a Hugging Face causal LM.

One thread owns the model. Each step it:
  1. drops sequences whose client went away,
  2. takes waiting requests into free slots (up to `max_num_seqs`),
  3. prefills new prompts: short ones together in one left-padded forward, a long one
     alone in chunks of `prefill_chunk` tokens, so running streams stall for at most
     one chunk; a prefilled sequence samples its first token and joins the batch,
  4. runs one decode forward for every running sequence and samples each row with
     its own parameters (and, with LoRA, its own adapter in the same batch: lora.py).

Prefill writes into a scratch `SlotKV`, whose rows are then copied into the batch's
`SlotKV` (see slot_cache.py). Choices of one prompt (n > 1, admitted together, see
engines/admission.py) are prefilled as one row, which each of them samples its first
token from and copies into the batch. Tokens become text through a `Detokenizer` and
the shared `TextStream` (stop strings, coalescing).
"""

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set

import torch

from .....types import GenerationDelta, SamplingParams
from ..admission import QueueSettings, SchedulerThread, Ticket
from ..detokenize import Detokenizer, shown_specials
from ..logprobs import entry
from ..text_stream import TextStream
from .sampling import RowSampler, sample
from .slot_cache import SlotCache, SlotKV

logger = logging.getLogger(__name__)



@dataclass
class _Seq:
    ticket: Ticket
    prompt: List[int]
    params: SamplingParams
    sampler: RowSampler
    detok: Detokenizer
    text: TextStream
    adapter: Optional[str]
    generated: int = 0
    last: int = -1
    # the other choices of this prompt, prefilled with it (a leader's)
    followers: List["_Seq"] = field(default_factory=list)

    def group(self) -> List["_Seq"]:
        return [self, *self.followers]


@dataclass
class _Prefill:
    """New sequences being prefilled together (one, when its prompt is chunked)."""

    seqs: List[_Seq]
    kv: SlotKV
    offset: int = 0  # prompt tokens already evaluated (chunked prefill)


class TransformersScheduler(SchedulerThread):
    engine = "Transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        n_layers: int,
        device: Any,
        max_num_seqs: int,
        prefill_chunk: int,
        queue: QueueSettings,
        eos_ids: Set[int],
        lora: Any,
        vocab_size: int,
    ):
        self._model = model
        self._tok = tokenizer
        self._n_layers = n_layers
        self._device = device
        self._chunk = prefill_chunk
        self._eos = eos_ids
        self._lora = lora  # a LoRASet, or None
        self._vocab = vocab_size
        self._kv = SlotKV(max_num_seqs, n_layers)
        self._cache = SlotCache(self._kv)
        self._running: List[_Seq] = []
        self._pending: List[_Seq] = []  # admitted, not yet prefilling
        self._prefill: Optional[_Prefill] = None
        super().__init__(max_num_seqs, queue)
        self.start()

    # ---- event-loop side -------------------------------------------------------------

    def _busy(self) -> int:
        return len(self._running) + sum(len(s.group()) for s in self._waiting())

    def _waiting(self) -> List[_Seq]:
        """Admitted leaders whose prompts are not evaluated yet."""
        return self._pending + (self._prefill.seqs if self._prefill else [])

    def stats(self) -> Dict[str, Any]:
        return {**super().stats(), "kv_cache_bytes": self._kv.nbytes()}

    # ---- scheduler thread -----------------------------------------------------------

    def _admitted(self) -> List[Ticket]:
        return [seq.ticket for seq in self._running + [m for s in self._waiting() for m in s.group()]]

    def _reset(self) -> None:
        self._running, self._pending, self._prefill = [], [], None
        self._reset_kv()

    def _reset_kv(self) -> None:
        self._kv = SlotKV(self.slots, self._n_layers)
        self._cache = SlotCache(self._kv)

    @torch.inference_mode()
    def _step(self) -> None:
        super()._step()  # all of it without autograd: the KV rows it moves too

    def _admit(self, tickets: List[Ticket]) -> None:
        self._pending += [self._new_seq(ticket) for ticket in tickets]

    def _advance(self) -> None:
        """One prefill step (a chunk, or a group of short prompts), then one decode step
        of every running sequence."""
        if self._prefill is None and self._pending:
            self._prefill = self._group()
        job = self._prefill
        if job is not None:
            try:
                self._prefill_step(job)
            except Exception as e:  # a bad prompt must not take the batch down
                logger.exception("prefill failed")
                self._prefill = None
                for seq in job.seqs:
                    for member in seq.group():
                        member.ticket.emit(e)
        if self._running:
            try:
                self._decode_step()
            except Exception as e:
                logger.exception("decode step failed")
                for seq in self._running:
                    seq.ticket.emit(e)
                self._running = []
                self._reset_kv()

    def _new_seq(self, ticket: Ticket) -> _Seq:
        prompt, params, constraint = ticket.request
        stops = set(params.stop_token_ids)
        banned = [t for t in self._eos | stops if t < self._vocab] if params.ignore_eos else []
        seq = _Seq(
            ticket=ticket,
            prompt=prompt,
            params=params,
            sampler=RowSampler(params, prompt, banned, constraint),
            detok=Detokenizer(self._tok, prompt, shown_specials(self._tok, params.keep_special)),
            text=TextStream(ticket.emit, params.stop, self._pace),
            adapter=params.lora_name,
        )
        seq.followers = [self._new_seq(f) for f in ticket.followers if not f.cancelled]
        return seq

    def _piece(self, token: int) -> bytes:
        """A token's own text, for log-probability entries."""
        return self._tok.decode([token], skip_special_tokens=False).encode("utf-8")

    def _streams(self) -> int:
        return len(self._running)  # a prompt being prefilled streams nothing yet

    def _drop_cancelled(self) -> None:
        for i in range(len(self._running) - 1, -1, -1):
            if self._running[i].ticket.cancelled:
                self._remove(i)
        self._pending = [s for s in map(_lead, self._pending) if s is not None]
        job = self._prefill
        if job is not None and all(m.ticket.cancelled for s in job.seqs for m in s.group()):
            self._prefill = None

    def _remove(self, row: int) -> None:
        self._kv.remove(row)
        last = self._running.pop()
        if row < len(self._running):
            self._running[row] = last

    # ---- prefill ------------------------------------------------------------------------

    def _group(self) -> _Prefill:
        """The next prefill job: as many pending prompts as fit one chunk when padded to
        the longest, or the first one alone (chunked) when it does not fit by itself."""
        seqs = [self._pending.pop(0)]
        longest = len(seqs[0].prompt)
        while self._pending and longest <= self._chunk:
            n = max(longest, len(self._pending[0].prompt))
            if n * (len(seqs) + 1) > self._chunk:
                break
            seqs.append(self._pending.pop(0))
            longest = n
        kv = SlotKV(len(seqs), self._n_layers, capacity=longest)
        return _Prefill(seqs, kv)

    def _prefill_step(self, job: _Prefill) -> None:
        longest = max(len(s.prompt) for s in job.seqs)
        take = min(self._chunk, longest - job.offset) if len(job.seqs) == 1 else longest
        rows = []
        added = []
        for seq in job.seqs:
            part = seq.prompt[job.offset : job.offset + take]
            rows.append([0] * (take - len(part)) + part)
            added.append(len(part))
        mask, pos = job.kv.prepare(added, self._device)
        logits = self._forward(rows, mask, pos, SlotCache(job.kv), [s.adapter for s in job.seqs])
        job.kv.commit()
        job.offset += take
        if job.offset < longest:
            return
        live = [[m for m in s.group() if not m.ticket.cancelled] for s in job.seqs]
        from_row = [row for row, members in enumerate(live) for _ in members]
        members = [m for ms in live for m in ms]
        picked = logits if from_row == list(range(len(job.seqs))) else logits[from_row]
        tokens = sample(picked, [m.sampler for m in members])
        for row, seq, token in zip(from_row, members, tokens):
            seq.followers = []
            if not self._accept(seq, token):
                self._kv.adopt(job.kv, row)
                self._running.append(seq)
        # only now: until here the job's sequences count as busy slots
        self._prefill = None

    # ---- decode -------------------------------------------------------------------------

    def _decode_step(self) -> None:
        seqs = self._running
        mask, pos = self._kv.prepare([1] * len(seqs), self._device)
        logits = self._forward([[s.last] for s in seqs], mask, pos, self._cache, [s.adapter for s in seqs])
        self._kv.commit()
        tokens = sample(logits, [s.sampler for s in seqs])
        finished = [i for i, (seq, token) in enumerate(zip(seqs, tokens)) if self._accept(seq, token)]
        for i in reversed(finished):
            self._remove(i)

    def _forward(self, rows: List[List[int]], mask: torch.Tensor, pos: torch.Tensor, cache: SlotCache,
                 adapters: Sequence[Optional[str]]) -> torch.Tensor:
        ids = torch.tensor(rows, dtype=torch.long, device=self._device)
        if self._lora is not None:
            self._lora.select(adapters, self._device)
        out = self._model(
            input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )
        return out.logits[:, -1, :]

    # ---- one token ----------------------------------------------------------------------

    def _accept(self, seq: _Seq, token: int) -> bool:
        """Streams one sampled token; True when the sequence is over."""
        seq.generated += 1
        seq.last = token
        seq.sampler.accept(token)
        params = seq.params
        reason: Optional[str] = None
        logprob = None
        if seq.sampler.last_logprobs is not None:
            lp, top = seq.sampler.last_logprobs
            logprob = entry(token, lp, top, self._piece)
        if token in self._eos or token in params.stop_token_ids:
            seq.text.feed(seq.detok.flush().encode("utf-8"))
            reason = "stop"
        elif seq.text.feed(seq.detok.add(token).encode("utf-8"), logprob):
            reason = "stop"
        elif seq.sampler.constraint is not None and seq.sampler.constraint.done:
            seq.text.feed(seq.detok.flush().encode("utf-8"))  # the grammar allows nothing more
            reason = "stop"
        elif params.max_tokens is not None and seq.generated >= params.max_tokens:
            seq.text.feed(seq.detok.flush().encode("utf-8"))
            reason = "length"
        if reason is None:
            return False
        seq.text.finish(GenerationDelta(
            finish_reason=reason,  # type: ignore[arg-type]
            prompt_tokens=len(seq.prompt),
            completion_tokens=seq.generated,
        ))
        return True


def _lead(seq: _Seq) -> Optional[_Seq]:
    """A waiting group without its members that left: led by its first live member."""
    live = [m for m in seq.group() if not m.ticket.cancelled]
    if not live:
        return None
    head = live[0]
    head.followers = live[1:]
    if head is not seq:
        seq.followers = []
    return head


def eos_token_ids(tokenizer: Any, generation_config: Any) -> Set[int]:
    """Every id that ends a generation: the tokenizer's eos and the model's own list."""
    ids: Set[int] = set()
    for source in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return ids

