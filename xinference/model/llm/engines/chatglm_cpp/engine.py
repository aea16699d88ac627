"""chatglm.cpp engine (the chatglm-cpp package), for the ChatGLM families' `ggmlv3` files.

chatglm.cpp decodes one sequence at a time, so requests wait in the same bounded queue
as the batching engines with a single slot, and replicas add concurrency. Chats are
formatted by the model's own tokenizer code: ChatGLM's role markers are token ids that
no text encodes to, so a Jinja template rendered to text could not produce them.

Each forward step holds the GIL (chatglm-cpp's binding does not release it), so it runs
in a thread of its own and the replica's event loop is served between steps. `seed` and
presence/frequency penalties cannot be passed to its C++ sampler: they are refused, not
ignored. `chatglm_cpp` is imported only in `load()`.
"""

import asyncio
from typing import Any, AsyncIterator, Callable, Dict, List, Mapping, Optional, Tuple

from .....errors import InvalidRequestError
from .....types import GenerationDelta, SamplingParams
from ....launch_options import Int
from ....memory import MiB
from ...chat_template import check_template_kwargs
from ...family import LLMFamily, LLMSpec, ggml_architecture
from ..admission import QUEUE_OPTIONS, QueueSettings, SchedulerThread, Ticket, queue_settings
from ..base import LLMEngine
from ..detokenize import Detokenizer
from ..text_stream import TextStream

DEFAULT_N_CTX = 8192
# "no limit" for the tokenizer calls that otherwise cut a long prompt silently; the
# context check happens in LLM.fit, with a clear error
NO_TRUNCATION = 1 << 30


class ChatglmCppEngine(LLMEngine):
    name = "chatglm.cpp"
    model_formats = ("ggmlv3",)
    libraries = ("chatglm_cpp",)
    install_hint = "bash scripts/install_chatglm_cpp.sh"
    launch_options = {
        **QUEUE_OPTIONS,
        # tokens of context (prompt + completion); the KV cache is allocated for it
        "n_ctx": Int(1, 1 << 20, capped_by="context_length"),
    }

    @classmethod
    def match(cls, family: LLMFamily, spec: LLMSpec, quantization: str) -> bool:
        return spec.model_format == "ggmlv3" and ggml_architecture(family) == "chatglm"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pipe: Any = None
        self._runner: Optional[_Runner] = None
        self._max_length = 0
        self._prefix: List[int] = []  # what encode() puts before any text ([gMASK] sop)
        self._roles: Tuple[str, ...] = ()

    memory_overhead = 160 * MiB  # like llama.cpp's: interpreter, bindings, buffers

    @classmethod
    def kv_tokens(cls, kwargs: Mapping[str, Any], family: LLMFamily) -> int:
        return int(kwargs.get("n_ctx") or min(family.context_length, DEFAULT_N_CTX))

    @property
    def context_length(self) -> int:
        return self._max_length or int(self.kwargs.get("n_ctx") or
                                       min(self.family.context_length, DEFAULT_N_CTX))

    async def load(self) -> None:
        await asyncio.to_thread(self._load_sync)

    def _load_sync(self) -> None:
        import chatglm_cpp

        asked = self.kwargs.get("n_ctx")
        want = int(asked or min(self.family.context_length, DEFAULT_N_CTX))
        try:
            pipe = chatglm_cpp.Pipeline(self.model_path, max_length=want)
        except RuntimeError as e:
            if asked is None and "max_length" in str(e):
                # the file holds less context than our default: take the file's
                pipe = self._open(chatglm_cpp, None)
            else:
                raise self._load_error(e) from None
        config = pipe.model.config
        self._pipe = pipe
        self._max_length = int(config.max_length)
        self._prefix = list(pipe.tokenizer.encode("", NO_TRUNCATION))
        self._roles = ("system", "user", "assistant") + (
            ("observation",) if config.model_type_name == "ChatGLM3" else ())
        eos = {int(config.eos_token_id), *(int(t) for t in config.extra_eos_token_ids)}
        opts = self.kwargs
        self._runner = _Runner(
            pipe, chatglm_cpp._C.GenerationConfig, eos,
            max_length=self._max_length,
            queue=queue_settings(opts, 1),
        )
        self.load_progress = 1.0

    def _open(self, chatglm_cpp: Any, max_length: Optional[int]) -> Any:
        try:
            if max_length is None:
                return chatglm_cpp.Pipeline(self.model_path)
            return chatglm_cpp.Pipeline(self.model_path, max_length=max_length)
        except RuntimeError as e:
            raise self._load_error(e) from None

    def _load_error(self, e: RuntimeError) -> InvalidRequestError:
        text = str(e)
        if "max_length" in text:
            return InvalidRequestError(
                f"n_ctx is larger than the context this model file holds: {text}", param="n_ctx")
        return InvalidRequestError(
            f"chatglm.cpp could not load {self.model_path} (not a chatglm.cpp GGML file?): {text}",
            param="model_path")

    # ---- prompts -----------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool) -> List[int]:
        ids = list(self._pipe.tokenizer.encode(text, NO_TRUNCATION))
        if not add_bos and ids[: len(self._prefix)] == self._prefix:
            del ids[: len(self._prefix)]
        return ids

    def chat_ids(self, messages: List[Dict[str, Any]],
                 template_kwargs: Optional[Dict[str, Any]] = None) -> Optional[List[int]]:
        if check_template_kwargs(template_kwargs):
            raise InvalidRequestError(
                "The chatglm.cpp engine formats chats with the model's built-in template, "
                "which takes no chat_template_kwargs.", param="chat_template_kwargs")
        import chatglm_cpp

        turns = [chatglm_cpp.ChatMessage(role=self._role(i, m), content=_text(i, m))
                 for i, m in enumerate(messages)]
        try:
            return list(self._pipe.tokenizer.apply_chat_template(turns, NO_TRUNCATION))
        except RuntimeError as e:  # the tokenizer's own checks (role order, ...)
            raise InvalidRequestError(f"chatglm.cpp cannot format these messages: {e}",
                                      param="messages") from None

    def _role(self, i: int, message: Dict[str, Any]) -> str:
        role = message.get("role")
        if role == "tool" and "observation" in self._roles:
            return "observation"  # ChatGLM3's role for what a tool returned
        if role not in self._roles:
            raise InvalidRequestError(
                f"messages[{i}].role {str(role)[:40]!r} is not one this model knows "
                f"({', '.join(self._roles)}).", param="messages")
        return str(role)

    # ---- generation ----------------------------------------------------------------------

    async def generate(
        self, prompt_ids: List[int], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        if not prompt_ids:
            raise InvalidRequestError("The prompt is empty.", param="prompt")
        _check_sampling(params)
        assert self._runner is not None, "generate() before load()"
        ticket = Ticket(asyncio.get_running_loop(), (list(prompt_ids), params))
        async for delta in self._runner.queue.serve(ticket):
            yield delta

    def stats(self) -> Dict[str, Any]:
        if self._runner is None:
            return {}
        return {**self._runner.stats(), "batching": False}

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await asyncio.to_thread(runner.stop)
        self._pipe = None


def _text(i: int, message: Dict[str, Any]) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequestError(
                    f"messages[{i}].content has a {str(kind)[:40]!r} part; this model reads text only.",
                    param="messages")
            parts.append(str(part.get("text") or ""))
        return "".join(parts)
    raise InvalidRequestError(f"messages[{i}].content must be text.", param="messages")


def _check_sampling(params: SamplingParams) -> None:
    """Options chatglm.cpp's sampler has no way to honour are a 400, never ignored."""
    refused = []
    if params.seed is not None:
        refused.append(("seed", "its sampler cannot be seeded"))
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(params, name):
            refused.append((name, "it has repetition_penalty only"))
    if params.lora_name is not None:
        refused.append(("lora_name", "it cannot load LoRA adapters"))
    if refused:
        name, why = refused[0]
        raise InvalidRequestError(f"The chatglm.cpp engine cannot take {name}: {why}.", param=name)


class _ChatglmDecode:
    """chatglm.cpp's tokenizer with the `decode` signature Detokenizer calls."""

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer

    def decode(self, ids: List[int], skip_special_tokens: bool = True,
               clean_up_tokenization_spaces: bool = False) -> str:
        # The binding raises when the bytes end inside a character: decode what is
        # complete and mark the rest as pending, as a partial character would be.
        for end in range(len(ids), -1, -1):
            try:
                text = self._tok.decode(ids[:end], skip_special_tokens)
            except UnicodeDecodeError:
                continue
            return text if end == len(ids) else text + "\ufffd"
        return "\ufffd"


class _Runner(SchedulerThread):
    """The thread that owns the model and runs one request at a time."""

    engine = "chatglm.cpp"

    def __init__(self, pipe: Any, config_cls: Any, eos: set, *, max_length: int,
                 queue: QueueSettings):
        self._pipe = pipe
        self._model = pipe.model
        self._decoder = _ChatglmDecode(pipe.tokenizer)
        self._config_cls = config_cls
        self._eos = frozenset(eos)
        self._max_length = max_length
        self._current: Optional[Ticket] = None
        super().__init__(1, queue)
        self.start()

    def _busy(self) -> int:
        return int(self._current is not None)

    def _admitted(self) -> List[Ticket]:
        return [self._current] if self._current is not None else []

    def _reset(self) -> None:
        self._current = None

    def _admit(self, tickets: List[Ticket]) -> None:
        [self._current] = tickets

    def _advance(self) -> None:
        """The admitted request, to its end (a failure fails it: SchedulerThread._run)."""
        ticket = self._current
        if ticket is None:
            return
        last = self._serve(ticket)
        if last is None and self._stopping:
            return  # stop() fails it
        # free before the last delta goes out: whoever reads it sees the slot free
        self._current = None
        if last is not None:
            last()

    def _serve(self, ticket: Ticket) -> Optional[Callable[[], None]]:
        """Generates; returns what sends the last delta (None: the client left)."""
        prompt, params = ticket.request
        config = self._config_cls(
            max_length=self._max_length,
            max_new_tokens=int(params.max_tokens or 0) or -1,
            max_context_length=NO_TRUNCATION,
            do_sample=params.temperature > 0,
            top_k=int(params.top_k) if params.top_k > 0 else 0,
            top_p=float(params.top_p),
            temperature=float(params.temperature) or 1.0,
            repetition_penalty=float(params.repetition_penalty),
        )
        stops = set(params.stop_token_ids) | (set() if params.ignore_eos else self._eos)
        text = TextStream(ticket.emit, params.stop, self.stream_interval)
        detok = Detokenizer(self._decoder, prompt)
        # Every request evaluates its whole prompt: chatglm.cpp evaluates either a whole
        # prompt (n_past 0) or one token, so continuing a cached prefix would feed the rest
        # of the prompt one token at a time.
        ids, n_past, produced, reason, hit = list(prompt), 0, 0, "length", False
        limit = min(self._max_length, len(prompt) + (params.max_tokens or self._max_length))
        while len(ids) < limit:
            if ticket.cancelled or self._stopping:
                return None
            token = int(self._model.generate_next_token(ids, None, config, n_past, len(prompt)))
            n_past = len(ids)
            if token in stops:
                reason = "stop"
                break
            ids.append(token)
            produced += 1
            hit = text.feed(detok.add(token).encode("utf-8"))
            if hit:
                reason = "stop"
                break
        if not hit:
            text.feed(detok.flush().encode("utf-8"))
        last = GenerationDelta(finish_reason=reason,  # type: ignore[arg-type]
                               prompt_tokens=len(prompt), completion_tokens=produced)
        return lambda: text.finish(last)
