"""Renders a chat template (a family's, or a model's own) into a prompt.

The environment matches what Hugging Face templates are written against: trimmed
blocks, `break`/`continue` in loops, `raise_exception`, `strftime_now`, and a
`tojson` that keeps non-ASCII text as is.
"""

import json
from datetime import datetime
from functools import lru_cache
from typing import Any, Dict, List

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

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


def render_chat(
    template: str,
    messages: List[Dict[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
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
    except (TemplateError, TypeError, KeyError, IndexError) as e:
        raise InvalidRequestError(
            f"Cannot format the messages with the model's chat template: {e}",
            param="messages",
        ) from None
