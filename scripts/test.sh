#!/usr/bin/env bash
# Installs the dev dependencies, then runs lint, type checks, the layer contract
# and the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

PYTHON="$PY" bash scripts/install_llama_cpp.sh
# The CPU build of torch, before anything that depends on torch pulls the CUDA one.
"$PY" -m pip install -q "torch==${TORCH_VERSION:-2.13.0}"
"$PY" -m pip install -q -e ".[dev]"

echo "== ruff";          "$PY" -m ruff check xinference tests benchmarks examples
echo "== mypy";          "$PY" -m mypy xinference
echo "== import-linter"; lint-imports
echo "== pytest";        "$PY" -m pytest tests -p no:cacheprovider -q -ra "$@"
