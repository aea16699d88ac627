"""A loaded LLM: a family's prompt rules on top of an engine."""

from typing import Any, AsyncIterator, Dict, List, Optional

from ...errors import InvalidRequestError
from ...types import GenerationDelta, SamplingParams, ToolUse
from .chat_template import render_chat
from .engines.base import LLMEngine
from .tools.calls import read_tool_calls
from .tools.formats import ToolFormat, tool_format, with_object_arguments

# Without max_tokens a base model may ramble to the end of its context; cap it like
# Xinference does, and let the caller ask for more.
DEFAULT_MAX_TOKENS = 1024


class LLM:
    def __init__(self, engine: LLMEngine):
        self.engine = engine
        self.family = engine.family

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

    def stream(
        self, prompt_ids: List[int], params: SamplingParams
    ) -> AsyncIterator[GenerationDelta]:
        params = self.fit(prompt_ids, params)
        use = params.tool_use
        if use is None:
            return self.engine.generate(prompt_ids, params)
        fmt = self.tool_format()
        update: Dict[str, Any] = {"tool_use": None, "keep_special": list(fmt.special_markers)}
        if use.forced:
            update["tool_grammar"] = fmt.grammar(use.tools, use.choice, use.parallel)
        return read_tool_calls(self.engine.generate(prompt_ids, params.model_copy(update=update)), fmt, use)
