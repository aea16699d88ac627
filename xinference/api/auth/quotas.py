"""Per-account quotas (requests per minute, tokens per day) and usage counters.

In memory, in the REST process (one per cluster): counters restart with the server.
"""

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List

from ...errors import QuotaExceededError
from .config import Quota
from .principal import Principal

DAY_S = 86400


@dataclass
class _Account:
    username: str
    label: str
    quota: Quota
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    day: int = -1  # the UTC day `tokens_today` counts
    tokens_today: int = 0
    recent: Deque[float] = field(default_factory=deque)  # request times within the last minute


class Quotas:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._accounts: Dict[str, _Account] = {}

    def _account(self, p: Principal) -> _Account:
        acc = self._accounts.get(p.account)
        if acc is None:
            acc = self._accounts[p.account] = _Account(p.username, p.label, p.quota)
        return acc

    def admit(self, p: Principal) -> None:
        """Counts one metered request, or refuses it with 429 and when to retry."""
        now = self._clock()
        acc = self._account(p)
        today = int(now // DAY_S)
        if acc.day != today:
            acc.day, acc.tokens_today = today, 0
        limit = p.quota.tokens_per_day
        if limit is not None and acc.tokens_today >= limit:
            raise QuotaExceededError(
                f"This key used its {limit} tokens for today (UTC); it may call again after midnight UTC.",
                retry_after=max(1, int((today + 1) * DAY_S - now)))
        while acc.recent and acc.recent[0] <= now - 60:
            acc.recent.popleft()
        rpm = p.quota.requests_per_minute
        if rpm is not None and len(acc.recent) >= rpm:
            raise QuotaExceededError(
                f"This key sent {rpm} requests in the last minute, its limit; retry shortly.",
                retry_after=max(1, int(acc.recent[0] + 60 - now) + 1))
        acc.recent.append(now)
        acc.requests += 1

    def record(self, p: Principal, prompt_tokens: int, completion_tokens: int) -> None:
        acc = self._account(p)
        acc.prompt_tokens += prompt_tokens
        acc.completion_tokens += completion_tokens
        today = int(self._clock() // DAY_S)
        if acc.day != today:
            acc.day, acc.tokens_today = today, 0
        acc.tokens_today += prompt_tokens + completion_tokens

    def observe(self, record: Any) -> None:
        """A finished inference request (xinference.api.observe): its tokens count
        against its caller's daily quota."""
        if isinstance(record.principal, Principal):
            self.record(record.principal, record.prompt_tokens, record.completion_tokens)

    def usage(self) -> List[Dict[str, Any]]:
        now = self._clock()
        today = int(now // DAY_S)
        rows = []
        for acc in self._accounts.values():
            rows.append({
                "username": acc.username, "key": acc.label, "requests": acc.requests,
                "prompt_tokens": acc.prompt_tokens, "completion_tokens": acc.completion_tokens,
                "total_tokens": acc.prompt_tokens + acc.completion_tokens,
                "tokens_today": acc.tokens_today if acc.day == today else 0,
                "requests_last_minute": sum(1 for t in acc.recent if t > now - 60),
                "requests_per_minute_limit": acc.quota.requests_per_minute,
                "tokens_per_day_limit": acc.quota.tokens_per_day,
            })
        return rows
