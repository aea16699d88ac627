"""Starts real daemons on 127.0.0.1 for the tests and cleans up whole process trees."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import psutil
import requests

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    proc: subprocess.Popen
    log_path: str
    endpoint: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tree(self) -> List[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            kill_group(self.proc)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def start(args: List[str], log_dir: str, name: str, env: Optional[Dict[str, str]] = None) -> Daemon:
    log_path = os.path.join(log_dir, f"{name}.log")
    # What a supervisor launched is kept per test (log_dir), never across tests: a daemon
    # of another test on the same port would otherwise bring those models back.
    full_env = {**os.environ, "XINFERENCE_STATE_DIR": os.path.join(log_dir, "state"), **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [os.path.join(BIN, args[0]), *args[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,  # its own group, so a test can kill the whole tree
        )
    return Daemon(proc, log_path)


def wait_http(daemon: Daemon, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {daemon.proc.returncode}:\n{daemon.log()}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {timeout}s:\n{daemon.log()}")


def start_local(log_dir: str, env: Optional[Dict[str, str]] = None, *extra: str, ui: bool = False) -> Daemon:
    """A real xinference-local; without the web UI unless `ui` (building it takes ~4 s)."""
    port = free_port()
    flags = [*extra] if ui or "--no-ui" in extra else [*extra, "--no-ui"]
    d = start(["xinference-local", "-H", "127.0.0.1", "-p", str(port), *flags], log_dir, f"local-{port}", env)
    d.endpoint = f"http://127.0.0.1:{port}"
    wait_http(d, d.endpoint + "/status")
    return d


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s (last: {last!r})")
