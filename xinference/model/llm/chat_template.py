"""Renders a chat template (a family's, or a model's own) into a prompt.

The environment matches what Hugging Face templates are written against: trimmed
blocks, `break`/`continue` in loops, `raise_exception`, `strftime_now`, and a
`tojson` that keeps non-ASCII text as is.
"""

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

from jinja2.sandbox import ImmutableSandboxedEnvironment

from ...constants import CHAT_TEMPLATE_VARIABLES
from ...errors import InvalidRequestError


class _TemplateRaised(Exception):
    pass


def _raise_exception(message: str) -> None:
    raise _TemplateRaised(message)


def _tojson(value: Any, indent: Any = None, separators: Any = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=32)
def _compile(source: str):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    # Hugging Face templates may stamp today's date into the system prompt.
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def check_template_kwargs(template_kwargs: Any) -> Dict[str, Any]:
    """chat_template_kwargs as the render's extra variables: an object whose keys are not
    variables the renderer passes itself (messages, bos_token, ...); a 400 otherwise."""
    if template_kwargs is None:
        return {}
    if not isinstance(template_kwargs, dict):
        raise InvalidRequestError("chat_template_kwargs must be an object.",
                                  param="chat_template_kwargs")
    taken = sorted(k for k in template_kwargs if k in CHAT_TEMPLATE_VARIABLES)
    if taken:
        raise InvalidRequestError(
            f"chat_template_kwargs may not set {', '.join(taken)}: the server passes "
            f"{'it' if len(taken) == 1 else 'them'} to the template itself.",
            param="chat_template_kwargs")
    bad = [k for k in template_kwargs if not isinstance(k, str) or not k.isidentifier()]
    if bad:
        raise InvalidRequestError(f"chat_template_kwargs key {str(bad[0])[:80]!r} is not a "
                                  "variable name.", param="chat_template_kwargs")
    return dict(template_kwargs)


def render_chat(
    template: str,
    messages: List[Dict[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    template_kwargs: Optional[Dict[str, Any]] = None,
    variables: Optional[Dict[str, Any]] = None,
) -> str:
    """`variables`: what the server itself adds to the render (the tools); unlike
    `template_kwargs`, which a request sends, they may be template variables."""
    extra = {**check_template_kwargs(template_kwargs), **(variables or {})}
    try:
        return _compile(template).render(
            messages=messages,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            **extra,
        )
    except _TemplateRaised as e:
        raise InvalidRequestError(str(e), param="messages") from None
    except RecursionError:
        raise InvalidRequestError("The chat template recursed too deeply on these messages.",
                                  param="messages") from None
    except Exception as e:  # noqa: BLE001 - a template is data: whatever it raises is the request's
        # (a variable of the wrong type, 1 / 0, a missing key...), never the server's
        raise InvalidRequestError(
            f"Cannot format the messages with the model's chat template: {type(e).__name__}: {e}",
            param="messages",
        ) from None


def tokenizer_template(tok: Any) -> Optional[Tuple[str, Dict[str, str]]]:
    """A Hugging Face tokenizer's own chat template and the BOS/EOS text it writes, or
    None when it has none (a dict of named templates gives its default)."""
    template = getattr(tok, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    if not template:
        return None
    return template, {"bos_token": tok.bos_token or "", "eos_token": tok.eos_token or ""}
