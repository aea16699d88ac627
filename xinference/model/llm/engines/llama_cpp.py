"""llama.cpp engine (llama-cpp-python), for GGUF models.

One `Llama` context serves one generation at a time: requests queue on a lock and
each runs in a worker thread, handing tokens back to the event loop as they come.
`llama_cpp` is imported only in `load()`, so importing this module is cheap.
"""

import asyncio
import codecs
import importlib.util
import os
import random
import threading
import time
from typing import Any, AsyncIterator, List, Optional

from ....errors import InvalidRequestError
from ....types import GenerationDelta, SamplingParams
from .base import LLMEngine

DEFAULT_N_CTX = 4096
# Seconds between two streamed pieces (see _Coalescer); 0 streams every token.
DEFAULT_STREAM_INTERVAL = 0.05


class LlamaCppEngine(LLMEngine):
    name = "llama.cpp"
    model_formats = ("ggufv2",)
    launch_kwargs = (
        "n_ctx",
        "n_threads",
        "n_batch",
        "n_gpu_layers",
        "use_mmap",
        "use_mlock",
        "flash_attn",
        "verbose",
        "stream_interval",
    )

    @classmethod
    def is_installed(cls) -> bool:
        return importlib.util.find_spec("llama_cpp") is not None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._llm: Any = None
        self._lock = asyncio.Lock()
        self._eog: Any = None
        self._stream_interval = DEFAULT_STREAM_INTERVAL

    @property
    def context_length(self) -> int:
        return int(self._llm.n_ctx()) if self._llm is not None else self._n_ctx()

    def _n_ctx(self) -> int:
        return int(self.kwargs.get("n_ctx") or min(self.family.context_length, DEFAULT_N_CTX))

    async def load(self) -> None:
        await asyncio.to_thread(self._load_sync)

    def _load_sync(self) -> None:
        import llama_cpp

        opts = dict(self.kwargs)
        self._stream_interval = float(opts.pop("stream_interval", DEFAULT_STREAM_INTERVAL))
        opts["n_ctx"] = self._n_ctx()
        opts.setdefault("n_threads", _default_threads())
        opts.setdefault("verbose", False)
        if self.n_gpu > 0:
            opts.setdefault("n_gpu_layers", -1)
        try:
            self._llm = llama_cpp.Llama(model_path=self.model_path, **opts)
        except ValueError as e:
            raise InvalidRequestError(
                f"llama.cpp could not load {self.model_path}: {e}", param="model_path"
            ) from None
        vocab = self._llm._model.vocab
        self._eog = lambda tok: bool(llama_cpp.llama_vocab_is_eog(vocab, tok))

    def tokenize(self, text: str, add_bos: bool) -> List[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    async def generate(
        self, prompt_ids: List[int], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        async with self._lock:
            worker = asyncio.ensure_future(
                asyncio.to_thread(self._run, list(prompt_ids), params, emit, cancel)
            )
            try:
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    yield item
                    if item.finish_reason is not None:
                        break
            finally:
                # The consumer went away (or finished): stop decoding and wait for
                # the thread, so the next request finds the context free.
                cancel.set()
                await asyncio.shield(worker)

    def _run(self, prompt_ids, params: SamplingParams, emit, cancel) -> None:
        try:
            self._decode(prompt_ids, params, emit, cancel)
        except BaseException as e:  # noqa: BLE001 - hand every failure to the caller
            emit(e)

    def _decode(self, prompt_ids, params: SamplingParams, emit, cancel) -> None:
        llm = self._llm
        llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
        stop_ids = set(params.stop_token_ids)
        max_tokens = params.max_tokens or 0
        stops = _StopMatcher(params.stop)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out = _Coalescer(emit, self._stream_interval)
        produced = 0
        finish: Optional[str] = "length"
        tokens = llm.generate(
            prompt_ids,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=0.0,
            temp=params.temperature,
            repeat_penalty=params.repetition_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            reset=True,
        )
        try:
            for tok in tokens:
                if cancel.is_set():
                    return
                if tok in stop_ids or self._eog(tok):
                    finish = "stop"
                    break
                produced += 1
                text, hit = stops.feed(decoder.decode(llm.detokenize([tok])))
                out.add(text)
                if hit:
                    finish = "stop"
                    break
                if produced >= max_tokens:
                    break
        finally:
            tokens.close()
        if not stops.hit:
            out.add(stops.flush() + decoder.decode(b"", final=True))
        out.finish(
            GenerationDelta(
                finish_reason=finish,  # type: ignore[arg-type]
                prompt_tokens=len(prompt_ids),
                completion_tokens=produced,
            )
        )

    async def close(self) -> None:
        if self._llm is not None:
            llm, self._llm = self._llm, None
            await asyncio.to_thread(llm.close)


class _Coalescer:
    """Hands text to the event loop at most every `interval` seconds.

    Each hand-off wakes the replica's loop, an RPC and the REST process; on a
    small machine those wake-ups steal time from llama.cpp's own threads. The
    first piece goes out at once, so time-to-first-token is unchanged.
    """

    def __init__(self, emit, interval: float):
        self._emit = emit
        self._interval = interval
        self._buf = ""
        self._last: Optional[float] = None

    def add(self, text: str) -> None:
        if not text:
            return
        self._buf += text
        now = time.monotonic()
        if self._last is None or now - self._last >= self._interval:
            self._emit(GenerationDelta(text=self._buf))
            self._buf = ""
            self._last = now

    def finish(self, last: GenerationDelta) -> None:
        last.text = self._buf + last.text
        self._buf = ""
        self._emit(last)


class _StopMatcher:
    """Holds back text that might be the start of a stop string."""

    def __init__(self, stops: List[str]):
        self.stops = [s for s in stops if s]
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> "tuple[str, bool]":
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


def _default_threads() -> int:
    # llama.cpp decodes fastest on physical cores; leave one for the serving loop
    # only when there are plenty.
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, n - 1) if n > 4 else n
