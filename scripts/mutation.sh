#!/usr/bin/env bash
# Mutation testing with mutmut: small deliberate bugs in chosen modules, each run against
# the tests that cover it; a surviving mutant is a promise no test pins. Not part of CI.
#
#   scripts/mutation.sh core                      # the core: keys, distributions, model parts,
#                                                 # objectives, step and epoch, preprocessing,
#                                                 # per-example evaluation
#   scripts/mutation.sh run                       # the run layer: resume, retention, metrics,
#                                                 # reproduce
#   scripts/mutation.sh vae_jax/core/rng.py -- tests/core/test_rng.py tests/promises/test_key_derivations.py
#
# Work happens in a scratch copy ($MUTATION_DIR, default /tmp/vae_jax_mutation/<name>), so
# the checkout is never touched. Prints the kill rate per module and writes every
# survivor's diff to <scratch>/survivors.diff. MUTATION_WORKERS sets parallel mutants (1);
# MUTATION_SAMPLE=N tests a fixed random sample of N mutants per module instead of all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$ROOT"

CORE_MODULES="vae_jax/core/rng.py vae_jax/core/draws.py vae_jax/data/batching.py
  vae_jax/data/preprocess.py vae_jax/objectives.py vae_jax/training/step.py
  vae_jax/training/summaries.py vae_jax/evaluation/per_example.py vae_jax/model/vae.py
  vae_jax/model/bounds.py vae_jax/model/contract.py vae_jax/model/compatibility.py
  vae_jax/core/distributions/gaussian.py vae_jax/core/distributions/bernoulli.py
  vae_jax/core/distributions/mixture.py vae_jax/core/likelihoods.py
  vae_jax/evaluation/bounds.py vae_jax/core/precision.py vae_jax/model/priors.py
  vae_jax/model/flows.py vae_jax/model/hierarchy.py"
CORE_TESTS="tests/core/test_rng.py tests/core/test_draws.py tests/core/test_distributions.py
  tests/core/test_precision.py tests/model/test_vae.py tests/model/test_bounds.py
  tests/model/test_priors.py tests/model/test_flows.py tests/model/test_hierarchy.py
  tests/model/test_compatibility.py tests/data/test_ingest.py tests/data/test_source.py
  tests/data/test_pipeline.py tests/data/test_preprocess.py tests/data/test_batching.py
  tests/scripts/test_prepare_data.py tests/test_objectives.py tests/test_optimizers.py
  tests/test_config_checks.py tests/training/test_summaries.py tests/training/test_step.py
  tests/training/test_resume.py tests/evaluation/test_bounds.py
  tests/evaluation/test_diagnostics.py tests/evaluation/test_per_example.py
  tests/evaluation/test_evaluate_run.py tests/promises/test_key_derivations.py
  tests/promises/test_run_bookkeeping.py tests/sweep/test_runner.py"
RUN_MODULES="vae_jax/training/resume.py vae_jax/training/fit.py vae_jax/run/checkpointing.py
  vae_jax/run/metrics_log.py vae_jax/run/directory.py vae_jax/reproduce.py
  vae_jax/config_checks.py"
# The fault, interruption and sweep tests exercise resume, retention and the loop's stops.
RUN_TESTS="tests/test_config_checks.py tests/training/test_summaries.py tests/training/test_step.py
  tests/training/test_resume.py tests/evaluation/test_per_example.py tests/test_objectives.py
  tests/data/test_source.py tests/promises/test_run_bookkeeping.py tests/test_single_run.py
  tests/run/test_checkpointing.py tests/promises/test_faults.py tests/promises/test_interruptions.py
  tests/sweep/test_runner.py tests/sweep/test_seeds.py tests/sweep/test_strategies.py"

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in
  core) name=core; modules=$CORE_MODULES; tests=$CORE_TESTS; shift ;;
  run) name=run; modules=$RUN_MODULES; tests=$RUN_TESTS; shift ;;
  -h | --help) usage ;;
  *)
    name=custom; modules=""; tests=""
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do modules="$modules $1"; shift; done
    [ "${1:-}" = "--" ] && shift
    tests="$*"
    [ -n "$tests" ] || { log "error: name the tests after '--' (e.g. -- tests/core/test_rng.py)"; exit 2; }
    ;;
esac
for path in $modules $tests; do
  [ -f "$path" ] || { log "error: $path is not a file of this checkout"; exit 2; }
done

ensure_venv
stamp="$VENV/.requirements-dev.sha256"
want="$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing requirements-dev.txt into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" >"$stamp"
fi

scratch="${MUTATION_DIR:-/tmp/vae_jax_mutation/$name}"
log "scratch copy: $scratch (modules: $(echo $modules); tests: $(echo $tests))"
rm -rf "$scratch"
mkdir -p "$scratch"
cp -r vae_jax experiments tests scripts pyproject.toml "$scratch/"
{
  echo "[mutmut]"
  echo "source_paths = vae_jax"
  echo "only_mutate ="; for m in $modules; do echo "    $m"; done
  echo "pytest_add_cli_args_test_selection ="; for t in $tests; do echo "    $t"; done
  # One process per mutant, forked from a server that has not started JAX (XLA's threads
  # do not survive a fork).
  echo "pytest_add_cli_args ="; printf '    %s\n' -p no:xdist -p no:cacheprovider
  # Log lines and the wording of error messages are not promises (tests match the field a
  # message names, which lives in the arguments, not in the raise statement's text).
  echo "do_not_mutate_patterns ="; printf '    %s\n' '^\s*raise ' '^\s*logging\.' '^\s*print\('
  # Module fixtures (a trained tiny run) are charged to a module's first test only: without
  # room for them, every mutant that reaches such a test would count as a timeout.
  echo "timeout_constant = 60"
  echo "process_isolation = forkserver"
  echo "forkserver_warmup = none"
  echo "also_copy ="; printf "    %s\n" experiments scripts
} >"$scratch/setup.cfg"

cd "$scratch"
started=$(date +%s)
selection=()
if [ -n "${MUTATION_SAMPLE:-}" ]; then
  # A fixed random sample of N mutants per module: a full run of the core is ~1,900 mutants,
  # hours on two cores. The generation steps are those `mutmut run` starts with.
  "$PY" - "$MUTATION_SAMPLE" >selection.txt <<'PY'
import json, os, random, sys
from pathlib import Path
import mutmut.__main__ as m

with open(os.devnull, "w") as quiet:
    stdout, sys.stdout = sys.stdout, quiet
    m.set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    m.copy_src_dir(); m.copy_also_copy_files(); m.setup_source_paths()
    m.store_lines_covered_by_tests(); m.create_mutants(1)
    sys.stdout = stdout
for meta in sorted(Path("mutants").rglob("*.py.meta")):
    names = sorted(json.loads(meta.read_text())["exit_code_by_key"])
    print("\n".join(random.Random(0).sample(names, min(int(sys.argv[1]), len(names)))))
PY
  mapfile -t selection < <(grep . selection.txt)
  log "sampled ${#selection[@]} mutants (MUTATION_SAMPLE=$MUTATION_SAMPLE per module)"
fi
"$VENV/bin/mutmut" run --max-children "${MUTATION_WORKERS:-1}" "${selection[@]}" >mutmut.log 2>&1 || {
  tail -n 40 mutmut.log >&2
  log "error: mutmut failed; the whole log is $scratch/mutmut.log"
  exit 1
}
"$VENV/bin/mutmut" results --all true >results.txt 2>&1
"$PY" - "$scratch" "$(($(date +%s) - started))" <<'PY'
"""Kill rate per module from `mutmut results --all true`; survivors' diffs to a file."""
import collections
import re
import subprocess
import sys
from pathlib import Path

scratch, seconds = Path(sys.argv[1]), int(sys.argv[2])
status_by_mutant = {
    mutant: status
    for mutant, status in re.findall(
        r"^\s*(\S+__mutmut_\d+): (.+)$", (scratch / "results.txt").read_text(), re.M
    )
    if status != "not checked"  # outside a MUTATION_SAMPLE
}
counts = collections.defaultdict(collections.Counter)
for mutant, status in status_by_mutant.items():
    module = mutant.split(".x_")[0].split(".xǁ")[0]
    counts[module][status] += 1
print(f"{'module':40} {'killed':>7} {'total':>6} {'rate':>6}  not killed")
all_killed = all_total = 0
for module, c in sorted(counts.items()):
    killed, total = c["killed"], sum(c.values())
    all_killed, all_total = all_killed + killed, all_total + total
    others = ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s != "killed")
    print(f"{module:40} {killed:7d} {total:6d} {killed / total:6.0%}  {others}")
if all_total:
    print(f"{'all':40} {all_killed:7d} {all_total:6d} {all_killed / all_total:6.0%}")
survivors = sorted(m for m, s in status_by_mutant.items() if s != "killed")
with open(scratch / "survivors.diff", "w") as out:
    for mutant in survivors:
        mutmut = str(Path(sys.executable).parent / "mutmut")
        shown = subprocess.run(
            [mutmut, "show", mutant], capture_output=True, text=True, cwd=scratch
        ).stdout
        out.write(f"# {mutant}: {status_by_mutant[mutant]}\n{shown}\n")
print(f"{len(survivors)} not killed, diffs in {scratch / 'survivors.diff'}; {seconds} s")
PY
