#!/usr/bin/env bash
# Installs llama-cpp-python built with flags that are safe on every CPU we run on
# (see wheelhouse.sh for why it is built into a wheelhouse of our own).
set -euo pipefail
PY="${PYTHON:-python}"
# shellcheck source=scripts/wheelhouse.sh
. "$(dirname "$0")/wheelhouse.sh"

VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
CMAKE_FLAGS="\"-DCMAKE_C_FLAGS=${NO_AMX}\" \"-DCMAKE_CXX_FLAGS=${NO_AMX}\""

install_from_wheelhouse llama-cpp-python "$VERSION" "$CMAKE_FLAGS" 4-11 "CMAKE_ARGS=$CMAKE_FLAGS"
lib=$("$PY" -c 'import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), "lib"))')
check_no_amx "$lib/libggml-cpu.so"
