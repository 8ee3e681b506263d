"""``run_grid_sweep``: a hyperparameter grid times seeds, one compiled program per shape.

The cells (``vae_jax.sweep.grid``) are split into groups whose configs compile to the same
training program (``hyperparameters.structure_key``): in a group, the traced fields (beta,
learning rate, free bits, warm-up, Adam's b1/b2/eps, clipping) and the seed are inputs of
one compiled epoch over all its cells and seeds (``group.train_group``); each group that
changes a shape is compiled once. ``<workdir>/<cell>/seed_<s>/`` is a single run of the
cell's config with seed ``s``.

Many processes or hosts can share a sweep (a Slurm job array, or any launcher that sets an
index and a count): task ``i`` of ``n`` takes the ``i``-th of ``n`` contiguous shares of
the cells in group order, locks and writes only their directories, and resumes them when
started again. ``sweep.json`` holds the grid; every task checks it is the same sweep.
``aggregate_sweep`` (``--aggregate``) builds the table from the cells that are done and
lists the missing ones (with why: not trained, not evaluated, failed, a damaged report);
a sweep run as one task does this at its end. A run stopped by a non-finite value is
recorded as failed and the others go on; a rerun leaves it unless ``retry_failed``.

``run_cells`` is the one driver of every sweep: a seed sweep (``runner.run_sweep``) is the
one cell of no grid axes in the seed sweep's layout (``vae_jax.sweep.layouts``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from vae_jax import config_checks, hyperparameters
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import evaluate_run as evaluation
from vae_jax.run import files, runtime
from vae_jax.run.lock import WorkdirLock
from vae_jax.single_run import key_reuse_checking
from vae_jax.sweep import aggregate, grid, layouts, runs
from vae_jax.sweep.seeds import seed_workdir
from vae_jax.training import resume


def task_from_environment(task_index: int | None, num_tasks: int | None) -> tuple[int, int]:
    """``--task_index``/``--num_tasks``, defaulting to a Slurm job array's
    (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``), else
    task 0 of 1; checked in one line."""
    env = os.environ
    if num_tasks is None:
        num_tasks = int(env.get("SLURM_ARRAY_TASK_COUNT", 1))
    if task_index is None:
        task_index = int(env.get("SLURM_ARRAY_TASK_ID", 0)) - int(
            env.get("SLURM_ARRAY_TASK_MIN", 0)
        )
    if num_tasks < 1:
        raise ConfigError(f"--num_tasks={num_tasks} must be >= 1")
    if not 0 <= task_index < num_tasks:
        raise ConfigError(f"--task_index={task_index} must be in [0, --num_tasks={num_tasks})")
    return task_index, num_tasks


def group_cells(config, cells: list[grid.Cell]) -> list[list[grid.Cell]]:
    """Cells whose configs compile to one program, in order of first appearance."""
    groups: dict[str, list[grid.Cell]] = {}
    for cell in cells:
        key = hyperparameters.structure_key(grid.cell_config(config, cell))
        groups.setdefault(key, []).append(cell)
    return list(groups.values())


def task_share(groups: list[list[grid.Cell]], task_index: int, num_tasks: int) -> list[list]:
    """Task ``task_index``'s contiguous share of the cells in group order (shares differ by
    at most one cell), as groups, so a task compiles as few programs as it can."""
    ordered = [(g, cell) for g, cells in enumerate(groups) for cell in cells]
    size, extra = divmod(len(ordered), num_tasks)
    start = task_index * size + min(task_index, extra)
    mine = ordered[start : start + size + (task_index < extra)]
    return [[cell for g, cell in mine if g == group] for group in sorted({g for g, _ in mine})]


def sweep_definition(config, seeds, grid_specs, zip_specs, cells, groups, *, strategy, evaluate):
    """What ``sweep.json`` records and every task must agree on: the cells in grid order,
    each with the index of its program."""
    group_of = {cell.name: g for g, members in enumerate(groups) for cell in members}
    return {
        "kind": "grid",
        "grid": list(grid_specs),
        "zip": list(zip_specs),
        "fields": list(cells[0].values),
        "seeds": list(seeds),
        "cells": [{"name": c.name, "values": c.values, "group": group_of[c.name]} for c in cells],
        "strategy": strategy,
        "evaluate": evaluate,
        "config": resume.config_as_json(config),
    }


@dataclasses.dataclass
class Plan:
    """What one sweep command does: its cells, their programs, this task's share of them
    and the runs of each program it trains, as ``layout`` names them."""

    config: Any
    workdir: Path
    seeds: list[int]
    cells: list[grid.Cell]
    groups: list[list[grid.Cell]]
    share: list[list[grid.Cell]]
    planned: list[list[runs.Member]]
    task_index: int
    num_tasks: int
    strategy: str
    evaluate: bool
    grid_specs: tuple = ()
    zip_specs: tuple = ()

    @property
    def all_members(self) -> list[runs.Member]:
        return [member for members in self.planned for member in members]

    def definition(self) -> dict:
        return sweep_definition(
            self.config, self.seeds, self.grid_specs, self.zip_specs, self.cells, self.groups,
            strategy=self.strategy, evaluate=self.evaluate,
        )  # fmt: skip


def run_grid_sweep(
    config,
    workdir: str | Path,
    seeds: list[int],
    *,
    grid_specs: list[str] = (),
    zip_specs: list[str] = (),
    strategy: str = "auto",
    evaluate: bool = True,
    num_importance_samples: int | None = None,
    task_index: int | None = None,
    num_tasks: int | None = None,
    retry_failed: bool = False,
) -> dict:
    """Trains (or resumes) this task's cells, group by group, and evaluates each run; a
    sweep of one task then writes the table. Every check runs before any work."""
    task_index, num_tasks = task_from_environment(task_index, num_tasks)
    cells = grid.make_cells(config, list(grid_specs), list(zip_specs))
    return run_cells(
        config, workdir, seeds, cells, layouts.GRID, strategy=strategy, evaluate=evaluate,
        num_importance_samples=num_importance_samples, task_index=task_index,
        num_tasks=num_tasks, retry_failed=retry_failed, grid_specs=tuple(grid_specs),
        zip_specs=tuple(zip_specs),
    )  # fmt: skip


def run_cells(
    config,
    workdir: str | Path,
    seeds: list[int],
    cells: list[grid.Cell],
    layout,
    *,
    strategy: str,
    evaluate: bool,
    num_importance_samples: int | None,
    task_index: int = 0,
    num_tasks: int = 1,
    retry_failed: bool = False,
    grid_specs: tuple = (),
    zip_specs: tuple = (),
) -> dict:
    """The one sweep driver: every check, then each program of this task's share of the
    cells trained and evaluated (``runs.train_and_evaluate_group``), then the table;
    ``layout`` (``vae_jax.sweep.layouts``) names, locks and records the runs. A seed sweep
    is ``run_cells`` over the one cell of no grid axes with ``layouts.SEEDS``."""
    workdir = files.workdir_path(workdir)
    runtime.apply_runtime_config(config)
    groups = group_cells(config, cells)
    share = task_share(groups, task_index, num_tasks)
    planned = []
    for group in share:
        members = layout.members(config, group, seeds, workdir)
        config_checks.check_all(members[0].config)
        runs.check_no_early_stopping(members[0].config)
        left = [m for m in members if not runs.trained(m, set_aside=False)]
        runs.check_strategy(members[0].config, strategy, layout.num_runs_to_place(members, left))
        for member in members:
            resume.check_workdir(member.workdir, member.config)
        planned.append(members)
    if evaluate:
        evaluation.resolve_options(config.evaluation, num_importance_samples, None, None)
    datasets: dict[str, object] = {}
    for members in planned:  # every dataset read before any work: a data error leaves nothing
        _dataset_for(members[0].config, datasets)
    plan = Plan(
        config, workdir, list(seeds), cells, groups, share, planned, task_index, num_tasks,
        strategy, evaluate, grid_specs, zip_specs,
    )  # fmt: skip
    with layout.recording(plan) as chosen:
        for number, members in enumerate(planned, start=1):
            status = _train_and_evaluate_group(
                members[0].config, members, datasets, strategy, evaluate, num_importance_samples,
                description=layout.description(number, len(planned), members),
                locks=layout.group_locks(members), retry_failed=retry_failed,
            )  # fmt: skip
            if status != "complete":
                return {"status": status}
        return layout.finish(plan, chosen)


def _dataset_for(config, datasets: dict):
    """One load per distinct data config (and likelihood, which sets preprocessing)."""
    key = json.dumps([resume.config_as_json(config)["data"], config.model.likelihood])
    if key not in datasets:
        with key_reuse_checking(config):
            datasets[key] = load_dataset(config)
    return datasets[key]


def _train_and_evaluate_group(
    config, members, datasets, strategy, evaluate, num_importance_samples, *, description,
    locks, retry_failed,
) -> str:  # fmt: skip
    """``runs.train_and_evaluate_group`` with ``locks`` (``(directory, owner)``) held."""
    dataset = _dataset_for(config, datasets)
    with contextlib.ExitStack() as owned, key_reuse_checking(config):
        for directory, owner in locks:
            owned.enter_context(WorkdirLock(directory, owner))
        return runs.train_and_evaluate_group(
            config, dataset, members, strategy, evaluate, num_importance_samples,
            description=description, retry_failed=retry_failed,
        )  # fmt: skip


def aggregate_sweep(workdir: str | Path) -> dict:
    """The table of a sweep's cells that are done (``sweep_table.json``/``.md`` and figures),
    with the missing ones listed; safe while tasks still run (it only reads their runs)."""
    workdir = files.workdir_path(workdir)
    path = workdir / files.SWEEP_FILE
    if not path.exists():
        raise ConfigError(f"--workdir={workdir}: no {files.SWEEP_FILE}; is it a sweep's workdir?")
    definition = files.read_json(path)
    if definition.get("kind") != "grid":  # a sweep over seeds only
        seeds = definition["seeds"]
        if all(aggregate.seed_status(seed_workdir(workdir, s)) for s in seeds):
            raise ConfigError(f"--workdir={workdir}: no seed has finished yet")
        table = aggregate.write_table(workdir, seeds)
        aggregate.print_table(table)
        return table
    return layouts.aggregate_grid(workdir)
