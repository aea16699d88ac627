#!/usr/bin/env bash
# Installs the dev dependencies, then runs lint, type checks, the layer contract
# and the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

PYTHON="$PY" bash scripts/install_llama_cpp.sh
PYTHON="$PY" bash scripts/install_chatglm_cpp.sh
# The CPU build of torch, before anything that depends on torch pulls the CUDA one.
"$PY" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
"$PY" -m pip install -q -e ".[dev]"
# vLLM in a virtualenv of its own (it pins an older transformers), after xinference, which
# its replicas import from the system site packages
PYTHON="$PY" bash scripts/install_vllm.sh >/dev/null
# The web UI's browser tests drive Debian's Chromium through Playwright (never
# `playwright install`); the CJK font renders the Chinese page.
if [ ! -x /usr/bin/chromium ] || ! dpkg -s fonts-wqy-microhei >/dev/null 2>&1; then
    echo "== apt-get install chromium fonts-wqy-microhei"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    APT_LOG="$(mktemp)"
    if ! { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            chromium fonts-wqy-microhei; } >"$APT_LOG" 2>&1; then
        cat "$APT_LOG"; exit 1
    fi
    rm -f "$APT_LOG"
fi

echo "== ruff";          "$PY" -m ruff check xinference tests benchmarks examples
# mypy's cache outside the clone: a clean clone then checks in seconds, not minutes
# (the cache is keyed on file contents, so a stale entry is never trusted)
echo "== mypy";          "$PY" -m mypy --cache-dir "${MYPY_CACHE_DIR:-$HOME/.cache/xinference/mypy}" xinference
echo "== import-linter"; lint-imports
echo "== pytest";        "$PY" -m pytest tests -p no:cacheprovider -q -ra --durations=40 "$@"
