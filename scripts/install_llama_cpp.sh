#!/usr/bin/env bash
# Installs llama-cpp-python built with flags that are safe on every CPU we run on.
#
# Why a script: PyPI ships only the sdist, so every machine compiles it (4-11 min), and
# the default build (-march=native with GCC 12) segfaults on the first decode on CPUs
# with AMX. pip caches a built wheel keyed by the sdist alone, so flags passed after a
# first plain build are silently ignored. We therefore build once into our own
# wheelhouse keyed by version + flags + CPU, and install from there (seconds).
set -euo pipefail

VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_FLAGS="\"-DCMAKE_C_FLAGS=${NO_AMX}\" \"-DCMAKE_CXX_FLAGS=${NO_AMX}\""
PY="${PYTHON:-python}"

if "$PY" - "$VERSION" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    ok = version("llama_cpp_python") == sys.argv[1]
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PYEOF
then
    if [ -z "${FORCE:-}" ]; then
        echo "llama-cpp-python ${VERSION} already installed"
        exit 0
    fi
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- || uname -m)
key=$(printf '%s|%s|%s|%s' "$VERSION" "$CMAKE_FLAGS" "$cpu" "$("$PY" -c 'import sys;print(sys.version_info[:2])')" | sha256sum | cut -c1-16)
house="${XINFERENCE_WHEELHOUSE:-$HOME/.cache/xinference/wheelhouse}/llama-cpp-python-${VERSION}-${key}"

if ! ls "$house"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Building llama-cpp-python ${VERSION} without AMX kernels (takes 4-11 minutes, once per machine)..."
    mkdir -p "$house"
    CMAKE_ARGS="$CMAKE_FLAGS" "$PY" -m pip wheel --no-cache-dir --no-deps \
        -w "$house" "llama-cpp-python==${VERSION}"
fi
# --only-binary: the sole wheel is ours; its dependencies come from the index as usual
"$PY" -m pip install --find-links "$house" --only-binary=llama-cpp-python "llama-cpp-python==${VERSION}"

lib=$("$PY" -c 'import llama_cpp, os; print(os.path.join(os.path.dirname(llama_cpp.__file__), "lib"))')
if command -v objdump >/dev/null 2>&1 && [ -f "$lib/libggml-cpu.so" ]; then
    n=$(objdump -d "$lib/libggml-cpu.so" | grep -c ldtilecfg || true)
    if [ "$n" != "0" ]; then
        echo "error: $lib/libggml-cpu.so still contains AMX tile code ($n ldtilecfg)" >&2
        exit 1
    fi
fi
echo "llama-cpp-python ${VERSION} installed from ${house}"
