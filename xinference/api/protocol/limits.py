"""Bounded field types shared by the request shapes (limits from xinference.constants).

As pydantic constraints they are checked before a request reaches a replica, answer 400
naming the field, and show in /openapi.json.
"""

from typing import Annotated, List

from pydantic import Field

from ...constants import MAX_STOP_CHARS, MAX_TEXT_CHARS

# A prompt, a message's content, an embedding input, a rerank query or document.
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
# One stop sequence.
StopText = Annotated[str, Field(max_length=MAX_STOP_CHARS)]
# Token ids of one input (the model's own context limit applies on the replica).
TokenIds = Annotated[List[int], Field(min_length=1, max_length=MAX_TEXT_CHARS)]


def check_total_text(total: int, what: str = "the messages") -> None:
    """All the text of a request's messages or prompts together, within MAX_TEXT_CHARS."""
    if total > MAX_TEXT_CHARS:
        raise ValueError(f"{what} hold {total} characters of text; at most {MAX_TEXT_CHARS} are taken")
