"""How far a download has come, read from the disk.

The hub clients write partial files under the cache entry; counting the bytes there
(every half second, in a thread of its own) measures any client, a resumed download
and a download this replica only waits for, and costs the download itself nothing.
"""

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Deque, Dict, Optional, Tuple

from .cache import bytes_on_disk

POLL_S = 0.5
# speed is measured over this many seconds of samples
SPEED_WINDOW_S = 5.0


class DownloadProgress:
    """Read by the replica's progress calls while the download runs in a thread."""

    def __init__(self) -> None:
        self.stage = "pending"  # pending | waiting | downloading | done
        self.repo: Optional[str] = None
        self.hub: Optional[str] = None
        self.total_bytes = 0
        self.done_bytes = 0
        self._start_bytes = 0
        self._samples: Deque[Tuple[float, int]] = deque()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def watch(self, entry: Path, total_bytes: int, stage: str, hub: str, repo: str,
              plan: Optional[Path] = None) -> None:
        """Starts sampling `entry`; `plan` is the download record of another process
        this one waits for, read for the total once it exists."""
        self.stop()
        self.stage, self.hub, self.repo, self.total_bytes = stage, hub, repo, total_bytes
        self.done_bytes = self._start_bytes = bytes_on_disk(entry)
        self._samples = deque([(time.monotonic(), self.done_bytes)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(entry, self._stop, plan),
                                        name="download-progress", daemon=True)
        self._thread.start()

    def _poll(self, entry: Path, stop: threading.Event, plan: Optional[Path]) -> None:
        while not stop.wait(POLL_S):
            if plan is not None and not self.total_bytes:
                try:
                    self.total_bytes = int(json.loads(plan.read_text())["total_bytes"])
                except (OSError, ValueError, KeyError):
                    pass  # not written yet
            self._sample(bytes_on_disk(entry))

    def _sample(self, done: int) -> None:
        now = time.monotonic()
        self.done_bytes = done
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW_S:
            self._samples.popleft()

    def stop(self, done: bool = False) -> None:
        self._stop.set()
        if done:
            self.stage = "done"
            self.done_bytes = max(self.done_bytes, self.total_bytes)

    @property
    def fraction(self) -> float:
        if self.stage == "done":
            return 1.0
        if not self.total_bytes:
            return 0.0
        # the last bytes are not "done" until they are verified and marked complete
        return min(0.99, self.done_bytes / self.total_bytes)

    @property
    def speed(self) -> float:
        """Bytes per second over the last few seconds."""
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return max(0.0, (b1 - b0) / (t1 - t0)) if t1 > t0 else 0.0

    def report(self) -> Dict[str, Any]:
        speed = self.speed
        left = max(0, self.total_bytes - self.done_bytes)
        return {
            "stage": self.stage,
            "hub": self.hub,
            "repo": self.repo,
            "downloaded_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "resumed_bytes": self._start_bytes,
            "speed_bytes_per_s": round(speed),
            "eta_s": round(left / speed, 1) if speed > 0 and self.stage == "downloading" else None,
        }
