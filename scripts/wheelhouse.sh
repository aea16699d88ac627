# Sourced by the install scripts of compiled dependencies (llama-cpp-python, chatglm-cpp).
#
# PyPI ships only sdists for them, so every machine compiles (minutes), and their default
# builds (-march=native with GCC 12) crash on CPUs with AMX. pip caches a built wheel keyed
# by the sdist alone, so flags given after a first plain build are silently ignored. We
# build once into our own wheelhouse keyed by version + flags + CPU + Python, and install
# from there (seconds).

NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"

# installed_version DIST: the installed version of a distribution, or nothing.
installed_version() {
    "$PY" - "$1" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    pass
PYEOF
}

# install_from_wheelhouse DIST VERSION FLAGS_KEY MINUTES [ENV=VALUE...]
# Builds DIST==VERSION into the wheelhouse (with the ENV=VALUE settings) unless a wheel
# built with FLAGS_KEY is there already, then installs it. A no-op when that version is
# installed, unless FORCE is set.
install_from_wheelhouse() {
    local dist="$1" version="$2" flags="$3" minutes="$4"
    shift 4
    if [ "$(installed_version "$dist")" = "$version" ] && [ -z "${FORCE:-}" ]; then
        echo "$dist $version already installed"
        return 0
    fi
    local cpu key house wheel_name
    cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- || uname -m)
    key=$(printf '%s|%s|%s|%s' "$version" "$flags" "$cpu" \
        "$("$PY" -c 'import sys;print(sys.version_info[:2])')" | sha256sum | cut -c1-16)
    house="${XINFERENCE_WHEELHOUSE:-$HOME/.cache/xinference/wheelhouse}/${dist}-${version}-${key}"
    wheel_name="${dist//-/_}"
    if ! ls "$house"/"$wheel_name"-*.whl >/dev/null 2>&1; then
        echo "Building $dist $version without AMX kernels (takes $minutes minutes, once per machine)..."
        mkdir -p "$house"
        env "$@" "$PY" -m pip wheel --no-cache-dir --no-deps -w "$house" "${dist}==${version}"
    fi
    # --only-binary: the sole wheel is ours; its dependencies come from the index as usual
    "$PY" -m pip install --find-links "$house" --only-binary="$dist" "${dist}==${version}"
    echo "$dist $version installed from $house"
}

# check_no_amx FILE: fails when a built library still has AMX tile instructions.
check_no_amx() {
    if command -v objdump >/dev/null 2>&1 && [ -f "$1" ]; then
        local n
        n=$(objdump -d "$1" | grep -c ldtilecfg || true)
        if [ "$n" != "0" ]; then
            echo "error: $1 still contains AMX tile code ($n ldtilecfg)" >&2
            return 1
        fi
    fi
}
