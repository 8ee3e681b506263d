#!/usr/bin/env bash
# The accelerator check: one command that measures this codebase on a lent GPU machine
# (sized for at most 8 minutes on an H200) and writes what comes back under $OUT.
#
# Here, once:   python scripts/build_accelerator_bundle.py    # .accelerator/: wheels + data
# There:        OUT=<folder> bash scripts/accelerator_check.sh   (carry .accelerator)
# This CPU:     OUT=/tmp/check PRESET=tiny JAX_PLATFORMS=cpu PYTHON=.venv/bin/python \
#                   bash scripts/accelerator_check.sh             # the same steps, tiny sizes
#
# Steps: install the carried wheels into a scratch folder beside the interpreter's own
# packages (the image's jax), check that Python imports them at their carried versions,
# ingest the carried Fashion-MNIST with scripts/prepare_data.py, then run
# `scripts/benchmark.py --sections=accelerator --preset=$PRESET`. It writes
# $OUT/accelerator_check.json (every number, the machine and the versions),
# $OUT/accelerator_summary.txt (what to read first) and $OUT/accelerator_check.log.
#
# Environment: OUT (required), PRESET (gpu | tiny; default gpu), BUNDLE (default
# .accelerator), PYTHON (default python3). Exit status: 0 every section measured, 1 a step
# failed or a section failed (the JSON still holds the others).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

fail() {
  echo "accelerator_check: error: $*" >&2
  exit 1
}

[ -n "${OUT:-}" ] || fail "OUT is not set: name the folder for the results (the device tool sets it)"
preset="${PRESET:-gpu}"
case "$preset" in
  gpu | tiny) ;;
  *) fail "PRESET=$preset: expected gpu or tiny" ;;
esac
bundle="${BUNDLE:-$repo/.accelerator}"
[ -f "$bundle/manifest.json" ] \
  || fail "$bundle/manifest.json not found: build the bundle with python scripts/build_accelerator_bundle.py"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || fail "PYTHON=$python: no such interpreter"
mkdir -p "$OUT"
log="$OUT/accelerator_check.log"
json="$OUT/accelerator_check.json"
summary="$OUT/accelerator_summary.txt"
rm -f "$log" "$json" "$summary"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/accelerator_check.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

step() { echo "== $(date -u +%H:%M:%S) $*"; }

# Each step checks its own status: errexit does not apply inside a function whose
# pipeline is followed by ||.
run_check() {
  step "accelerator check, preset $preset, $("$python" --version 2>&1), in $repo"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  fi

  shopt -s nullglob
  local wheels=("$bundle"/wheels/*.whl)
  shopt -u nullglob
  export PYTHONPATH="$repo"
  if [ "${#wheels[@]}" -gt 0 ]; then
    step "installing ${#wheels[@]} carried wheels into $scratch/site"
    PIP_ROOT_USER_ACTION=ignore "$python" -m pip install -q --disable-pip-version-check \
      --no-index --no-deps --no-compile --no-cache-dir --target "$scratch/site" "${wheels[@]}" || return
    PYTHONPATH="$repo:$scratch/site"
  else
    step "no wheels carried: using the interpreter's own packages"
  fi

  step "verifying the bundle"
  "$python" scripts/build_accelerator_bundle.py --verify --bundle="$bundle" || return

  step "preparing Fashion-MNIST from the carried IDX files"
  "$python" scripts/prepare_data.py --dataset=fashion_mnist --idx_dir="$bundle/fashion-mnist" \
    --data_dir="$scratch/tfds" || return

  step "benchmark sections (preset $preset)"
  local status=0
  PYTHONUNBUFFERED=1 "$python" scripts/benchmark.py --sections=accelerator --preset="$preset" \
    --data_dir="$scratch/tfds" --json="$json" --summary="$summary" || status=$?
  step "done (benchmark exit status $status)"
  return "$status"
}

status=0
run_check 2>&1 | tee "$log" || status=$?
if [ -f "$summary" ]; then
  echo "== summary ($summary)"
  cat "$summary"
fi
exit "$status"
