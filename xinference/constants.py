"""Defaults shared by every layer. Each can be overridden from the environment."""

import os
from pathlib import Path

XINFERENCE_HOME = Path(os.environ.get("XINFERENCE_HOME", Path.home() / ".xinference"))
XINFERENCE_CACHE_DIR = XINFERENCE_HOME / "cache"
XINFERENCE_LOG_DIR = XINFERENCE_HOME / "logs"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9997
DEFAULT_LOG_LEVEL = "INFO"

# Seconds between two heartbeats of a worker, and how long the supervisor waits
# without one before it drops the worker and every replica it held.
HEARTBEAT_INTERVAL = float(os.environ.get("XINFERENCE_HEARTBEAT_INTERVAL", "5"))
WORKER_TIMEOUT = float(os.environ.get("XINFERENCE_WORKER_TIMEOUT", "30"))

ENDPOINT_ENV = "XINFERENCE_ENDPOINT"
