"""Whole answers out of a stream of generation deltas (GenerationDelta as dicts).

Used wherever an answer is wanted in one piece: the replica's `complete`, the REST
server draining a stream, and best_of choosing among choices. Per choice (a delta's
`index`) the text, tool calls, invalid calls and log-probabilities are joined and the
last delta's finish reason kept; the usage adds up over the choices' last deltas (a
prompt's tokens are on its first choice only, so the sum counts each prompt once).
"""

from typing import Any, Dict, List

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "cached_tokens")
_JOINED = ("tool_calls", "invalid_tool_calls", "logprobs")


class Answers:
    def __init__(self) -> None:
        self._choices: Dict[int, Dict[str, Any]] = {}
        self._text: Dict[int, List[str]] = {}
        self.usage = dict.fromkeys(USAGE_KEYS, 0)

    def add(self, delta: Dict[str, Any]) -> None:
        index = int(delta.get("index") or 0)
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = {"index": index, "finish_reason": None,
                                             **{key: [] for key in _JOINED}, **dict.fromkeys(USAGE_KEYS, 0)}
            self._text[index] = []
        self._text[index].append(delta.get("text") or "")
        for key in _JOINED:
            choice[key] += delta.get(key) or []
        if delta.get("finish_reason"):
            choice["finish_reason"] = delta["finish_reason"]
            for key in USAGE_KEYS:
                choice[key] = int(delta.get(key) or 0)
                self.usage[key] += choice[key]

    def choices(self) -> List[Dict[str, Any]]:
        """Each choice, by index: {index, text, finish_reason, tool_calls,
        invalid_tool_calls, logprobs, and its own token counts}."""
        return [{**self._choices[i], "text": "".join(self._text[i])} for i in sorted(self._choices)]

    def result(self) -> Dict[str, Any]:
        """{"choices": [...], and the usage of them all}."""
        return {"choices": self.choices(), **self.usage}
