#!/usr/bin/env bash
# Install llama.cpp's Python server (llama-cpp-python[server], compiled from source here:
# about 8 minutes on 2 cores) into its own virtualenv, for slogate's real-engine test.
#
#   LLAMA_PY=$(bash .ci/install-llamacpp.sh | tail -n1)
#
# SLOGATE_LLAMACPP_VENV  venv dir (default: $HOME/.cache/slogate/llamacpp-venv)
# Idempotent: a stamp file records the version; a matching venv is reused.
# Progress goes to stderr; the last line of stdout is the venv's python.
set -euo pipefail

VERSION="0.3.36"
VENV="${SLOGATE_LLAMACPP_VENV:-$HOME/.cache/slogate/llamacpp-venv}"
STAMP="$VENV/.slogate-llamacpp-stamp"
PY="${SLOGATE_PYTHON:-python3}"

log() { printf '[install-llamacpp] %s\n' "$*" >&2; }

if [ -x "$VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$VERSION" ] \
    && "$VENV/bin/python" -c 'import llama_cpp.server' >/dev/null 2>&1; then
    log "reusing $VENV (llama-cpp-python $VERSION)"
else
    log "building llama-cpp-python[server]==$VERSION into $VENV (compiles llama.cpp)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/python" -m pip install --quiet \
        --disable-pip-version-check "llama-cpp-python[server]==$VERSION" >&2
    "$VENV/bin/python" -c 'import llama_cpp.server' >&2
    echo "$VERSION" > "$STAMP"
fi
echo "$VENV/bin/python"
