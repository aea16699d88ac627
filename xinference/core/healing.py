"""What happens to a model's replicas after they were launched: the history of each
model (crashes, relaunches, lost workers) and the budget that bounds relaunching a
replica that keeps dying. Pure bookkeeping; the supervisor acts on it."""

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional

from ..constants import MAX_RESTARTS, RESTART_WINDOW_S

# Events kept per model (the oldest go first).
MAX_EVENTS = 200
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0


@dataclass
class ModelEvents:
    """A model's history, newest last, and its summary for describe."""

    items: Deque[Dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    restarts: int = 0  # replicas relaunched after a crash or a lost worker
    last_error: Optional[str] = None

    def add(self, kind: str, replica_uid: Optional[str], message: str) -> None:
        self.items.append({"time": round(time.time(), 3), "kind": kind,
                           "replica_uid": replica_uid, "message": message})
        if kind in ("crashed", "worker_lost", "relaunch_failed"):
            self.last_error = message
        if kind == "relaunched":
            self.restarts += 1

    def listing(self) -> List[Dict[str, Any]]:
        return list(self.items)

    def summary(self) -> Dict[str, Any]:
        return {"restarts": self.restarts, "last_error": self.last_error}


@dataclass
class RestartBudget:
    """At most `max_restarts` relaunches of one replica within `window_s` seconds."""

    max_restarts: int = MAX_RESTARTS
    window_s: float = RESTART_WINDOW_S
    _times: Deque[float] = field(default_factory=deque)

    def take(self, now: Optional[float] = None) -> bool:
        """Spends one relaunch; False when the window's budget is spent."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            return False
        self._times.append(now)
        return True

    @property
    def spent(self) -> int:
        return len(self._times)

    def delay(self) -> float:
        """Seconds to wait before the next relaunch: 1, 2, 4 ... capped."""
        return min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** max(0, self.spent - 1))
