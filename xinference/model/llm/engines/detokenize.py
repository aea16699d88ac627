"""Incremental detokenization for Hugging Face tokenizers.

A token is not a piece of text on its own: a CJK character or an emoji may span
several byte tokens, and SentencePiece-style decoders decide spaces from the tokens
around them. So each step decodes a short window of recent tokens twice, without
and with the new ones, and emits the difference once it no longer ends in an
incomplete character (U+FFFD). The window starts with the prompt's last tokens so
the first generated token gets its leading space right.
"""

from typing import Any, Dict, List, Optional, Sequence

# Prompt tokens that seed the window.
CONTEXT_TOKENS = 4
# Hold back at most this many tokens waiting for a character to complete (a model
# may emit byte tokens that never form valid UTF-8).
MAX_HELD = 8


class Detokenizer:
    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int],
                 shown: Optional[Dict[int, str]] = None):
        self._tok = tokenizer
        self._ids: List[int] = list(prompt_ids[-CONTEXT_TOKENS:])
        self._prefix = 0
        self._read = len(self._ids)
        # special tokens that come out as their text (decoding skips the others)
        self._shown = shown or {}

    def _decode(self, ids: List[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token: int) -> str:
        """Text that `token` completes ("" while a character is still partial)."""
        if token in self._shown:
            rest = self.flush()
            self._ids.append(token)
            self._prefix = self._read = len(self._ids)
            return rest + self._shown[token]
        self._ids.append(token)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        held = len(self._ids) - self._read
        if len(after) > len(before) and (not after.endswith("\ufffd") or held >= MAX_HELD):
            self._prefix, self._read = self._read, len(self._ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back, at the end of the sequence."""
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""


def shown_specials(tokenizer: Any, texts: Sequence[str]) -> Dict[int, str]:
    """The ids of the special tokens written `texts` that the tokenizer has."""
    out: Dict[int, str] = {}
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) == 1:
            out[ids[0]] = text
    return out
