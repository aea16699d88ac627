"""Which replica most likely holds a prompt's beginning in its prefix cache.

A prompt (a chat's messages in order, or a completion's text) is cut into blocks of
BLOCK_CHARS characters, and each block is named by a hash of the whole text up to its
end, so a name stands for a prefix. A request remembers its prefixes -> the replica
that served it; the next turn of the conversation re-sends the same history plus more,
and its longest known prefix names the replica whose cache holds it.
"""

import hashlib
import json
from collections import OrderedDict
from typing import Any, List, Optional, Tuple

BLOCK_CHARS = 64
MAX_BLOCKS = 128  # the first 8 KiB of a prompt decide; hashing more costs for nothing
MAX_ENTRIES = 200_000  # prefixes remembered over all models (the oldest go first)


def prompt_text(kind: str, payload: Any) -> str:
    """The text whose prefixes name a request's cached beginning."""
    if kind == "chat":
        return "".join(f"{m.get('role')}\x1f{_content(m.get('content'))}\x1e" for m in payload)
    return payload if isinstance(payload, str) else json.dumps(payload)


def _content(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True)


def prefix_keys(text: str) -> List[bytes]:
    """One key per whole block, shortest prefix first."""
    keys: List[bytes] = []
    h = hashlib.blake2b(digest_size=12)
    for end in range(BLOCK_CHARS, min(len(text), BLOCK_CHARS * MAX_BLOCKS) + 1, BLOCK_CHARS):
        h.update(text[end - BLOCK_CHARS:end].encode("utf-8", "surrogatepass"))
        keys.append(h.copy().digest())
    return keys


class PrefixAffinity:
    def __init__(self, max_entries: int = MAX_ENTRIES):
        self._seen: OrderedDict[Tuple[str, bytes], str] = OrderedDict()
        self._max = max_entries

    def lookup(self, model_uid: str, keys: List[bytes]) -> Optional[str]:
        """The replica that served the longest of these prefixes last, if any."""
        for key in reversed(keys):
            replica = self._seen.get((model_uid, key))
            if replica is not None:
                return replica
        return None

    def remember(self, model_uid: str, keys: List[bytes], replica_uid: str) -> None:
        for key in keys:
            entry = (model_uid, key)
            self._seen[entry] = replica_uid
            self._seen.move_to_end(entry)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
