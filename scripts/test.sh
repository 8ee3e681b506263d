#!/usr/bin/env bash
# Sets up what is missing (.venv, pinned requirements; under CI as root, Debian's
# Fashion-MNIST package) and runs the linter and the test suite. Extra arguments go to pytest.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k data -x      # a subset
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"

ensure_venv
if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ]; then
  # The real-data test needs it; elsewhere that test is skipped when the package is absent.
  ensure_debian_package dataset-fashion-mnist || log "warning: could not install dataset-fashion-mnist"
fi

log "ruff check"
"$PY" -m ruff check .
# Two workers (one per core here); a test file's tests share a worker (module fixtures).
log "pytest"
exec "$PY" -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
