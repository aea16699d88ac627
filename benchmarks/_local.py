"""Shared helpers for the benchmarks: a throw-away `xinference-local` and small stats.

The server runs in its own session (process group) with XOSCAR_DIR in a temp dir;
`LocalServer.stop()` ends the whole group, replicas included, and is safe to call
twice. Every address is 127.0.0.1.
"""

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, TypeVar

import httpx

HOST = "127.0.0.1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _xinference_local() -> str:
    beside = Path(sys.executable).with_name("xinference-local")
    if beside.exists():
        return str(beside)
    found = shutil.which("xinference-local")
    if not found:
        raise SystemExit("xinference-local is not on PATH; `pip install -e .` first")
    return found


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the servers."""

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class LocalServer:
    """`xinference-local -H 127.0.0.1 -p PORT` as a subprocess, in its own session."""

    def __init__(self, log_level: str = "WARNING"):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="xinf-bench-")
        self._log = open(Path(self._tmp.name) / "server.log", "w+b")
        # its launched models are kept in the temp dir too: a throw-away server restores nothing
        env = dict(os.environ, XOSCAR_DIR=self._tmp.name, XINFERENCE_STATE_DIR=self._tmp.name, PYTHONUNBUFFERED="1")
        cmd = [_xinference_local(), "-H", HOST, "-p", str(self.port), "--log-level", log_level]
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def log_tail(self, n: int = 3000) -> str:
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - n))
        return self._log.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Polls GET /status; returns seconds from process start to the first 200."""
        deadline = self.started + timeout
        with httpx.Client(timeout=2.0) as c:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited ({self.proc.returncode}):\n{self.log_tail()}")
                try:
                    if c.get(f"{self.url}/status").status_code == 200:
                        return time.perf_counter() - self.started
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise TimeoutError(f"no /status after {timeout:g}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)  # graceful: the daemon ends its replicas
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self._signal(signal.SIGKILL)  # whatever is left of the group
        self.proc.wait()
        self._log.close()
        self._tmp.cleanup()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # pgid == pid: start_new_session=True
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def launch(
    client: httpx.Client, url: str, body: Dict[str, Any], wait_ready: bool = True
) -> str:
    params = None if wait_ready else {"wait_ready": "false"}
    r = client.post(f"{url}/v1/models", json=body, params=params, timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"launch failed: {r.status_code} {r.text}")
    return str(r.json()["model_uid"])


def measure_on_local(bodies: Dict[str, Dict[str, Any]],
                     measure: Callable[[str, Dict[str, str]], Awaitable[T]]) -> T:
    """Starts xinference-local, launches each of `bodies` (engine -> launch body) and
    runs `measure(url, {engine: model uid})`; stops the server however that ends."""
    exit_on_sigterm()
    with LocalServer() as server:
        server.wait_ready()
        uids = {}
        with httpx.Client(timeout=900) as client:
            for engine, body in bodies.items():
                uids[engine] = launch(client, server.url, body)
        return asyncio.run(measure(server.url, uids))


def spread(values: Sequence[float], digits: int = 1) -> str:
    """min / median / max."""
    return " / ".join(f"{v:.{digits}f}" for v in (min(values), statistics.median(values), max(values)))


def wait_model_ready(client: httpx.Client, url: str, uid: str, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        r = client.get(f"{url}/v1/models/{uid}")
        if r.status_code != 200:
            raise RuntimeError(f"model {uid}: {r.status_code} {r.text}")
        status = r.json()["status"]
        if status == "READY":
            return
        if status == "ERROR":
            raise RuntimeError(f"model {uid} failed: {r.text}")
        time.sleep(0.02)
    raise TimeoutError(f"model {uid} not READY after {timeout:g}s")


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def table(headers: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]

    def fmt(row: List[str]) -> str:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


# Distinct long-answer prompts for load tests (each request gets its own, so no two
# share a cached prefix beyond the template).
LOAD_TOPICS = [
    "Write a long story about a lighthouse keeper who finds a message in a bottle.",
    "Explain in detail how a steam locomotive works, from the firebox to the wheels.",
    "Describe a walk through a busy fish market early on a winter morning.",
    "Write a travel guide for a small mountain town that has one bakery and a lake.",
    "Tell the history of the printing press and how it changed European cities.",
    "Write a letter from a sailor to his sister about his first voyage south.",
    "Explain how bees build a hive and how the colony decides where to move.",
    "Describe the life of a street musician in a large city over one long day.",
    "Write a detective story that starts with a missing umbrella at a train station.",
    "Explain how bread rises, what yeast does and why the oven temperature matters.",
    "Describe a chess tournament from the point of view of the youngest player.",
    "Write a fairy tale about a fox who wants to learn to read the stars.",
    "Explain how a river shapes its valley over thousands of years.",
    "Write the diary of a gardener during the driest summer in a century.",
    "Describe how a small village prepares for its yearly harvest festival.",
    "Write a story about two friends who build a raft to cross a wide lake.",
]
