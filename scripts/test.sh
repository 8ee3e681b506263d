#!/usr/bin/env bash
# Sets up what is missing (.venv, pinned requirements; under CI as root, Debian's
# Fashion-MNIST package) and runs the linter and the test suite. Extra arguments go to pytest.
#
#   scripts/test.sh                 # everything (what .ci/run calls)
#   scripts/test.sh --fast          # the unit tests only, for the inner loop: leaves out the
#                                   # tests marked `slow` (end-to-end training runs, entry
#                                   # points started in a subprocess, the real data)
#   scripts/test.sh -k data -x      # a subset
#   scripts/test.sh --fast -k data  # a subset of the unit tests
#
# --fast is this script's own flag (pytest never sees it); it adds `-m "not slow"`, so
# do not combine it with a -m of your own. A selection that collects no test fails (5).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"

pytest_args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then
    pytest_args+=(-m "not slow")
  else
    pytest_args+=("$arg")
  fi
done

ensure_venv
if [ "${CI:-}" = "true" ] && [ "$(id -u)" = 0 ]; then
  # The real-data test needs it; elsewhere that test is skipped when the package is absent.
  ensure_debian_package dataset-fashion-mnist || log "warning: could not install dataset-fashion-mnist"
fi

log "ruff check"
"$PY" -m ruff check .
# Two workers (one per core here); a test file's tests share a worker (module fixtures).
log "pytest"
exec "$PY" -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "${pytest_args[@]}"
