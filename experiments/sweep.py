"""Train many seeds -- and a grid of hyperparameters -- in one compiled program per shape.

    python -m experiments.sweep --config=experiments/configs/fashion_mlp.py \\
        --workdir=runs/fashion_sweep --seeds=0-7 [--strategy=auto|map|vmap|shard]

    python -m experiments.sweep --config=experiments/configs/fashion_mlp.py \\
        --workdir=runs/beta --seeds=0-2 \\
        --grid=objective.beta=0.25,0.5,1,2 --grid=optimizer.learning_rate=3e-4,1e-3

Seeds only: <workdir>/seed_<s>/ holds each seed's single run. A grid: --grid flags cross,
--zip flags move together; <workdir>/<cell>/seed_<s>/ holds each cell's runs. The table
(sweep_table.json / .md: mean, std, 95% interval over seeds per metric and cell) and
figures are written at the end. Running it again resumes every run from its checkpoints.

Spread a grid over processes or hosts (a Slurm job array sets the defaults):

    python -m experiments.sweep ... --task_index=<i> --num_tasks=<n>   # each task its cells
    python -m experiments.sweep --workdir=runs/beta --aggregate        # table of what is done

A run stopped by a non-finite value is recorded as failed (in its report.json and the
table) and the others go on; a rerun leaves it as it is unless --retry_failed.
--print_config prints the config with the overrides applied and exits.

Exit status: 0 done, 1 error, 75 stopped by SIGTERM or Ctrl-C (resumable).
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

from vae_jax.errors import ConfigError
from vae_jax.run import cli
from vae_jax.sweep.grid_runner import aggregate_sweep, run_grid_sweep
from vae_jax.sweep.runner import run_sweep
from vae_jax.sweep.seeds import parse_seeds
from vae_jax.sweep.strategies import STRATEGIES

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep.")
_SEEDS = flags.DEFINE_string("seeds", "0-7", "Seeds: 0-7, 1,3,5 or a mix.")
_GRID = flags.DEFINE_multi_string(
    "grid", [], "An axis of the grid: <field>=<v1>,<v2>,... (several flags cross)."
)
_ZIP = flags.DEFINE_multi_string(
    "zip", [], "Fields that move together: <field>=<v1>,<v2>,... (equal counts)."
)
_STRATEGY = flags.DEFINE_enum("strategy", "auto", list(STRATEGIES), "How runs share a program.")
_EVALUATE = flags.DEFINE_bool("evaluate", True, "Evaluate every run after training.")
_K = flags.DEFINE_integer(
    "num_importance_samples", None, "K of the test NLL (default: the config's)."
)
_TASK_INDEX = flags.DEFINE_integer(
    "task_index", None, "This task's index (default: $SLURM_ARRAY_TASK_ID, else 0)."
)
_NUM_TASKS = flags.DEFINE_integer(
    "num_tasks", None, "Tasks sharing the grid (default: $SLURM_ARRAY_TASK_COUNT, else 1)."
)
_AGGREGATE = flags.DEFINE_bool(
    "aggregate", False, "Only build the table of the runs that are done; list the missing."
)
_RETRY_FAILED = flags.DEFINE_bool(
    "retry_failed", False, "Resume runs recorded as failed (non-finite) from their last "
    "good checkpoint; by default a rerun leaves them as they are.",
)  # fmt: skip
_PRINT_CONFIG = cli.define_print_config()


def main(argv):
    del argv
    if _AGGREGATE.value:
        aggregate_sweep(_required_workdir())
        return
    if _CONFIG.value is None:
        raise ConfigError("--config is required (only --aggregate works without it)")
    config = cli.config_value(_CONFIG)
    if _PRINT_CONFIG.value:
        cli.print_config(config)
        return
    workdir, seeds = _required_workdir(), parse_seeds(_SEEDS.value)
    options = dict(
        strategy=_STRATEGY.value, evaluate=_EVALUATE.value, num_importance_samples=_K.value,
        retry_failed=_RETRY_FAILED.value,
    )  # fmt: skip
    if (
        _GRID.value
        or _ZIP.value
        or _TASK_INDEX.value is not None
        or _NUM_TASKS.value
        or ("SLURM_ARRAY_TASK_COUNT" in os.environ)
    ):
        result = run_grid_sweep(
            config, workdir, seeds, grid_specs=_GRID.value, zip_specs=_ZIP.value,
            task_index=_TASK_INDEX.value, num_tasks=_NUM_TASKS.value, **options,
        )  # fmt: skip
    else:
        result = run_sweep(config, workdir, seeds, **options)
    if result["status"] != "complete":
        sys.exit(cli.EXIT_STOPPED)  # stopped by a signal: the same command resumes


def _required_workdir() -> str:
    if _WORKDIR.value is None:
        raise ConfigError("--workdir is required (the sweep's directory)")
    return _WORKDIR.value


if __name__ == "__main__":
    cli.run(main)
