#!/usr/bin/env bash
# Installs chatglm-cpp (the chatglm.cpp engine) built with flags that are safe on every CPU
# we run on (see wheelhouse.sh for why it is built into a wheelhouse of our own).
#
# Two things its sdist needs that a plain `pip install chatglm-cpp` does not give it:
# - CMAKE_POLICY_VERSION_MINIMUM=3.5: build isolation pulls CMake 4, which rejects the
#   cmake_minimum_required of its vendored sentencepiece;
# - the flags through CFLAGS/CXXFLAGS: its setup.py splits CMAKE_ARGS on spaces without
#   shell quoting, so a -DCMAKE_C_FLAGS with several flags cannot go that way.
set -euo pipefail
PY="${PYTHON:-python}"
# shellcheck source=scripts/wheelhouse.sh
. "$(dirname "$0")/wheelhouse.sh"

VERSION="${CHATGLM_CPP_VERSION:-0.4.2}"

install_from_wheelhouse chatglm-cpp "$VERSION" "CFLAGS=${NO_AMX}" 6-9 \
    CMAKE_POLICY_VERSION_MINIMUM=3.5 "CFLAGS=${NO_AMX}" "CXXFLAGS=${NO_AMX}"
lib=$("$PY" -c 'import chatglm_cpp._C as c; print(c.__file__)')
check_no_amx "$lib"
