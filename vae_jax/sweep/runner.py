"""``run_sweep``: train many seeds in one compiled program, evaluate them, aggregate.

Each seed ``s`` gets ``<workdir>/seed_<s>/`` with the files of a single run (config with
``seed=s``, manifest, metrics, TensorBoard events, checkpoints, report, figures), so every
tool that reads a run (evaluate, reproduce, ``load_run``) reads a sweep's seed too. The
sweep itself writes ``sweep.json`` (settings, strategy and why), ``sweep_table.json`` and
``sweep_table.md`` (every metric per seed with mean, standard deviation and a 95%
interval) and ``figures/sweep_curves.png``.

A sweep run again does only what is left: runs whose report says they trained every
epoch are not trained again, runs evaluated at their final step with this K are not
evaluated again (their figures stay as they are), and runs recorded as failed (a
non-finite value stopped them while the others went on) are left as they are unless
``retry_failed`` asks to resume them from their last good checkpoint.

A seed sweep is a grid of one cell: ``run_sweep`` is the grid's driver
(``grid_runner.run_cells``) in the seed sweep's layout (``vae_jax.sweep.layouts``). Training
goes through ``vae_jax.sweep.group.train_group``, the path a single run takes as a group of
one; ``vae_jax.sweep.runs`` decides what is left to do and evaluates.
"""

from __future__ import annotations

from pathlib import Path

from vae_jax import config_checks
from vae_jax.sweep import grid, grid_runner, layouts
from vae_jax.sweep.group import Member, TrainedGroup, train_group
from vae_jax.sweep.runs import (
    check_no_early_stopping,
    check_strategy,
    evaluate_runs,
    evaluated,
    failed,
    report_of,
    resolve_strategy,
    retry,
    train_and_evaluate_group,
    trained,
)
from vae_jax.sweep.seeds import seed_workdir
from vae_jax.training import resume

# Importable from here as before the run helpers moved to ``runs`` and ``group``.
__all__ = [
    "Member",
    "TrainedGroup",
    "check_before_start",
    "check_no_early_stopping",
    "check_strategy",
    "evaluate_runs",
    "evaluated",
    "failed",
    "report_of",
    "resolve_strategy",
    "retry",
    "run_sweep",
    "seed_members",
    "seed_workdir",
    "train_and_evaluate_group",
    "train_group",
    "trained",
]  # fmt: skip


def seed_members(config, workdir: Path, seeds: list[int]) -> list[Member]:
    """The runs of a sweep over seeds, ``<workdir>/seed_<s>``: the seed layout's runs of
    the one cell of no axes."""
    return layouts.SEEDS.members(config, grid.make_cells(config, [], []), seeds, workdir)


def check_before_start(config, workdir: Path, seeds: list[int], strategy: str) -> None:
    """The checks a seed sweep makes before any work (``grid_runner.run_cells`` makes them
    for every program), for callers that check a sweep without starting it."""
    config_checks.check_all(config)
    check_no_early_stopping(config)
    check_strategy(config, strategy, len(seeds))
    for member in seed_members(config, workdir, seeds):
        resume.check_workdir(member.workdir, member.config)


def run_sweep(
    config,
    workdir: str | Path,
    seeds: list[int],
    *,
    strategy: str = "auto",
    evaluate: bool = True,
    num_importance_samples: int | None = None,
    retry_failed: bool = False,
) -> dict:
    """Trains (or resumes) every seed that is not done, evaluates each that is not
    evaluated, and writes the aggregate table (failed seeds listed, not counted): the grid
    of one cell, the config as it is, in the seed sweep's layout (``layouts.SEEDS``)."""
    return grid_runner.run_cells(
        config, workdir, seeds, grid.make_cells(config, [], []), layouts.SEEDS,
        strategy=strategy, evaluate=evaluate, num_importance_samples=num_importance_samples,
        retry_failed=retry_failed,
    )  # fmt: skip
