#!/usr/bin/env bash
# Installs the dev dependencies, then runs lint, type checks, the layer contract
# and the whole test suite. `.ci/run` calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"

PYTHON="$PY" bash scripts/install_llama_cpp.sh
"$PY" -m pip install -q -e ".[dev]"

echo "== ruff";          "$PY" -m ruff check xinference tests benchmarks examples
echo "== mypy";          "$PY" -m mypy xinference
echo "== import-linter"; lint-imports
echo "== pytest";        "$PY" -m pytest tests -p no:cacheprovider -q -ra "$@"
