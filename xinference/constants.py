"""Defaults shared by every layer. Each can be overridden from the environment."""

import os
from pathlib import Path

XINFERENCE_HOME = Path(os.environ.get("XINFERENCE_HOME", Path.home() / ".xinference"))
XINFERENCE_CACHE_DIR = XINFERENCE_HOME / "cache"
XINFERENCE_LOG_DIR = XINFERENCE_HOME / "logs"
# What each supervisor launched (one file per REST endpoint), for its restart.
XINFERENCE_STATE_DIR = Path(os.environ.get("XINFERENCE_STATE_DIR", XINFERENCE_HOME / "state"))

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9997
DEFAULT_LOG_LEVEL = "INFO"

# Seconds between two heartbeats of a worker, and how long the supervisor waits
# without one before it drops the worker and every replica it held.
HEARTBEAT_INTERVAL = float(os.environ.get("XINFERENCE_HEARTBEAT_INTERVAL", "5"))
WORKER_TIMEOUT = float(os.environ.get("XINFERENCE_WORKER_TIMEOUT", "30"))

ENDPOINT_ENV = "XINFERENCE_ENDPOINT"
# the API key (or login token) the CLI and the Python client send
API_KEY_ENV = "XINFERENCE_API_KEY"

# set (to 1) by --trust-remote-code on the daemons that load models
TRUST_REMOTE_CODE_ENV = "XINFERENCE_TRUST_REMOTE_CODE"


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {raw!r}.")
    return value


# Bounds on what one request may ask for. Each is a 4xx naming the field, checked before
# any work starts: a request over them would hold a replica (or start processes) for
# minutes and starve every other caller.
# Replicas one launch may ask for, and replicas (launching or running) one worker may hold.
MAX_REPLICAS = _positive_int_env("XINFERENCE_MAX_REPLICAS", 8)
MAX_REPLICAS_PER_WORKER = _positive_int_env("XINFERENCE_MAX_REPLICAS_PER_WORKER", 16)
# Inputs of one embedding request, documents of one rerank request.
MAX_EMBEDDING_INPUTS = _positive_int_env("XINFERENCE_MAX_EMBEDDING_INPUTS", 2048)
MAX_RERANK_DOCUMENTS = _positive_int_env("XINFERENCE_MAX_RERANK_DOCUMENTS", 1000)
# Characters of one text: a prompt, a chat's messages together, an embedding input, a
# rerank query or document (far above any model's context; 1M chars ~ 250k tokens).
MAX_TEXT_CHARS = _positive_int_env("XINFERENCE_MAX_TEXT_CHARS", 1_000_000)
MAX_CHAT_MESSAGES = _positive_int_env("XINFERENCE_MAX_CHAT_MESSAGES", 10_000)
# Characters of one stop sequence; every one is matched against each new piece of text.
MAX_STOP_CHARS = _positive_int_env("XINFERENCE_MAX_STOP_CHARS", 256)

# Whether a launch must fit in a worker's free memory (weights + KV cache + engine,
# less what its replicas reserved): "0" for machines whose swap or overcommit the user
# counts on.
CHECK_MEMORY = os.environ.get("XINFERENCE_CHECK_MEMORY", "1").strip().lower() not in ("0", "false", "no", "off")

# A replica whose process dies is relaunched (on its worker, or another if that one is
# gone) after 1, 2, 4 ... s, at most MAX_RESTARTS times within RESTART_WINDOW_S seconds;
# past that it stays down and the model serves from its other replicas.
# A REST server asks the supervisor again for a model's replicas at most this often
# (on the model's next request): replicas relaunched, added or removed come into use.
ROUTE_TTL_S = 2.0
MAX_RESTARTS = int(os.environ.get("XINFERENCE_MAX_RESTARTS", "3"))
RESTART_WINDOW_S = float(os.environ.get("XINFERENCE_RESTART_WINDOW_S", "600"))


def trust_remote_code_allowed() -> bool:
    """Whether model code shipped in a weights folder (transformers' trust_remote_code)
    may run in this worker's replicas. A setting of the worker's machine, never of a
    request: a caller who may name a folder (model_path) could otherwise run any Python
    in it. Read at call time: the CLI sets it after this module loaded."""
    return os.environ.get(TRUST_REMOTE_CODE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


# Names a chat template's renderer passes itself; chat_template_kwargs may not replace them.
CHAT_TEMPLATE_VARIABLES = frozenset({
    "messages", "add_generation_prompt", "bos_token", "eos_token", "pad_token", "unk_token",
    "tools", "documents", "continue_final_message", "raise_exception", "strftime_now",
})

# Bytes of one request body (JSON with base64 images included); a larger one is a 413
# before it is read, so a client cannot fill the REST server's memory.
MAX_BODY_BYTES = _positive_int_env("XINFERENCE_MAX_BODY_BYTES", 32 * 1024 * 1024)
