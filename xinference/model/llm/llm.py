"""A loaded LLM: a family's prompt rules on top of an engine."""

from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple

from ...errors import InvalidRequestError
from ...types import GenerationDelta, SamplingParams, ToolUse
from ..model_type import ServedModel
from .chat_template import render_chat
from .choices import best_of, merged
from .engines.base import LLMEngine
from .tools.calls import read_tool_calls
from .tools.formats import ToolFormat, tool_format, with_object_arguments

# Without max_tokens a base model may ramble to the end of its context; cap it like
# Xinference does, and let the caller ask for more.
DEFAULT_MAX_TOKENS = 1024

Reader = Callable[[AsyncIterator[GenerationDelta]], AsyncIterator[GenerationDelta]]


class LLM(ServedModel):
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self.family = engine.family

    # ---- a replica's model (model_type.ServedModel): the engine's -------------------

    @property
    def load_progress(self) -> float:
        return self.engine.load_progress

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    async def load(self) -> None:
        await self.engine.load()

    def stats(self) -> Dict[str, Any]:
        return self.engine.stats()

    async def close(self) -> None:
        await self.engine.close()

    # ---- requests -------------------------------------------------------------------

    def tool_format(self) -> ToolFormat:
        """How this model writes tool calls; a 400 for a model that cannot call tools."""
        return tool_format(self.family.tool_call_format, self.family.model_name)

    def chat_prompt(
        self, messages: List[Dict[str, Any]], template_kwargs: Optional[Dict[str, Any]] = None,
        tool_use: Optional[ToolUse] = None,
    ) -> List[int]:
        if tool_use is not None:
            messages, variables = self.tool_format().prepare(messages, tool_use.tools)
        elif self.family.tool_call_format:  # a history with calls, but no tools offered now
            messages, variables = self.tool_format().prepare(messages, None)
        else:
            messages, variables = [with_object_arguments(m) for m in messages], {}
        ids = self.engine.chat_ids(messages, template_kwargs)
        if ids is not None:
            return ids
        own = self.engine.chat_template()
        if own is not None:
            # The model's own template writes every special token it needs.
            template, tokens = own
            prompt = render_chat(template, messages, bos_token=tokens.get("bos_token", ""),
                                 eos_token=tokens.get("eos_token", ""),
                                 template_kwargs=template_kwargs, variables=variables)
            return self.engine.tokenize(prompt, add_bos=False)
        if not self.family.chat_template:
            raise InvalidRequestError(
                f"Model {self.family.model_name} has no chat template; use /v1/completions.",
                param="messages",
            )
        prompt = render_chat(
            self.family.chat_template,
            messages,
            bos_token=self.family.bos_token,
            template_kwargs=template_kwargs,
            variables=variables,
        )
        # The template writes BOS itself when the family has one.
        return self.engine.tokenize(prompt, add_bos=not self.family.bos_token)

    def completion_prompt(self, prompt: str) -> List[int]:
        return self.engine.tokenize(prompt, add_bos=True)

    def fit(self, prompt_ids: List[int], params: SamplingParams) -> SamplingParams:
        """Checks the request fits the context and the engine, and fills the family's stops."""
        forced = params.tool_use is not None and params.tool_use.forced
        if forced and not self.engine.supports_tool_grammar:
            raise InvalidRequestError(
                f"The {self.engine.name} engine cannot force tool calls (tool_choice \"required\" "
                'or a named function); send tool_choice "auto", or launch the model with the '
                "llama.cpp engine.", param="tool_choice")
        for asked, param in ((params.logprobs is not None, "logprobs"), (bool(params.logit_bias), "logit_bias")):
            if asked and not self.engine.supports_logprobs:
                raise InvalidRequestError(
                    f"The {self.engine.name} engine does not report log-probabilities or take "
                    f"logit_bias; send the request without {param}, or launch the model with "
                    "the llama.cpp or Transformers engine.", param=param)
        if params.json_schema is not None and not self.engine.supports_grammar:
            raise InvalidRequestError(
                f"The {self.engine.name} engine cannot constrain output to JSON (format / "
                "response_format); launch the model with the llama.cpp engine for that.",
                param="response_format",
            )
        n_ctx = self.engine.context_length
        room = n_ctx - len(prompt_ids)
        if params.max_tokens is not None and len(prompt_ids) + params.max_tokens > n_ctx:
            raise InvalidRequestError(
                f"This model's context holds {n_ctx} tokens, but the prompt has "
                f"{len(prompt_ids)} tokens and max_tokens is {params.max_tokens} "
                f"({len(prompt_ids) + params.max_tokens} in all). Shorten the prompt "
                "or lower max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if room <= 0:
            raise InvalidRequestError(
                f"This model's context holds {n_ctx} tokens, but the prompt has "
                f"{len(prompt_ids)} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        max_tokens = params.max_tokens if params.max_tokens is not None else min(room, DEFAULT_MAX_TOKENS)
        return params.model_copy(
            update={
                "max_tokens": max_tokens,
                "stop": list(dict.fromkeys(params.stop + self.family.stop)),
                "stop_token_ids": list(
                    dict.fromkeys(params.stop_token_ids + self.family.stop_token_ids)
                ),
            }
        )

    def stream(self, prompt_ids: List[int], params: SamplingParams) -> AsyncIterator[GenerationDelta]:
        return self.stream_many([prompt_ids], params)

    def stream_many(
        self, prompts: Sequence[List[int]], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        """The deltas of every choice: `params.n` per prompt (one prompt, or a list of
        them for completions), tagged with their index (choices.py); with `best_of`, the
        n best of that many per prompt, whole. Every prompt is checked before any runs."""
        fitted = [self.fit(ids, params) for ids in prompts]
        width = params.best_of or params.n
        if width > params.n and not self.engine.supports_logprobs:
            raise InvalidRequestError(
                f"The {self.engine.name} engine does not report log-probabilities, which "
                "best_of ranks choices by; send best_of equal to n, or launch the model with "
                "the llama.cpp or Transformers engine.", param="best_of")
        if len(prompts) == 1 and width == 1:
            engine_params, read = self._for_engine(fitted[0])
            return read(self.engine.generate(prompts[0], engine_params))
        return self._fanned(prompts, fitted, params.n, width, params.logprobs is not None)

    async def _fanned(self, prompts: Sequence[List[int]], fitted: List[SamplingParams], n: int,
                      width: int, keep_logprobs: bool) -> AsyncIterator[GenerationDelta]:
        streams: List[AsyncIterator[GenerationDelta]] = []
        try:
            for ids, params in zip(prompts, fitted):
                if width > n and params.logprobs is None:
                    params = params.model_copy(update={"logprobs": 0})  # to rank the choices
                engine_params, read = self._for_engine(params)
                streams += [read(s) for s in await self.engine.generate_n(ids, engine_params, width)]
        except BaseException:
            for stream in streams:
                await stream.aclose()  # type: ignore[attr-defined]
            raise
        deltas = best_of(streams, len(prompts), n, keep_logprobs) if width > n else merged(streams, width)
        try:
            async for delta in deltas:
                yield delta
        finally:
            await deltas.aclose()  # type: ignore[attr-defined]

    def _for_engine(self, params: SamplingParams) -> Tuple[SamplingParams, Reader]:
        """What the engine samples with, and what reads its deltas: tool calls are read
        out of the text where the request offers tools (and forced by a grammar where
        it requires them); other deltas pass as they are."""
        use = params.tool_use
        if use is None:
            return params, _as_is
        fmt = self.tool_format()
        update: Dict[str, Any] = {"tool_use": None, "keep_special": list(fmt.special_markers)}
        if use.forced:
            update["tool_grammar"] = fmt.grammar(use.tools, use.choice, use.parallel)
        return params.model_copy(update=update), lambda stream: read_tool_calls(stream, fmt, use)


def _as_is(stream: AsyncIterator[GenerationDelta]) -> AsyncIterator[GenerationDelta]:
    return stream
