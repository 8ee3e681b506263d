#!/usr/bin/env bash
# Set-up shared by quickstart.sh and test.sh; source it, then use "$PY" (the venv's python).
#
#   ensure_venv             .venv with the pinned requirements (re-installed when they change)
#                           and this checkout installed editable (`import vae_jax` and
#                           `python -m experiments.train` work from any directory)
#   ensure_debian_package P install Debian package P with apt-get if it is missing and apt is
#                           usable (root, or passwordless sudo); returns 1 if it cannot
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

log() { echo "[vae-jax] $*" >&2; }

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  log "error: Python >= 3.11 not found; install python3.11 (or set PYTHON=/path/to/python)"
  return 1
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

ensure_debian_package() {
  local package="$1"
  if dpkg -s "$package" >/dev/null 2>&1; then return 0; fi
  command -v apt-get >/dev/null 2>&1 || return 1
  log "installing Debian package $package"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null || return 1
}

# True when the venv's python, started from / without PYTHONPATH (-I), finds vae_jax and
# experiments in this checkout. find_spec locates a package without running it (fast).
project_installed() {
  (cd / && "$PY" -I - "$ROOT" <<'PY'
import os, sys
from importlib.util import find_spec

root = os.path.realpath(sys.argv[1])
for name in ("vae_jax", "experiments"):
    spec = find_spec(name)
    if spec is None or spec.origin is None:
        sys.exit(1)
    if os.path.commonpath([root, os.path.realpath(spec.origin)]) != root:
        sys.exit(1)
PY
  ) >/dev/null 2>&1
}

ensure_venv() {
  if [ ! -x "$PY" ]; then
    local python
    python="$(find_python)"
    log "creating $VENV with $python"
    if ! "$python" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      ensure_debian_package python3-venv || { log "error: '$python -m venv' failed"; return 1; }
      "$python" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.requirements.sha256" want
  want="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing pinned requirements into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements.txt"
    echo "$want" >"$stamp"
  fi
  # The project itself (its dependencies are the pinned ones above): re-installed when
  # pyproject.toml changes or when the venv finds vae_jax elsewhere (a moved or copied checkout).
  stamp="$VENV/.project.sha256"
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! project_installed; then
    log "installing $ROOT into $VENV (editable)"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT"
    project_installed || { log "error: after installing, vae_jax is not found in $ROOT"; return 1; }
    echo "$want" >"$stamp"
  fi
}
