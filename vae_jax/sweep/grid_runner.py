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
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from vae_jax import config_checks, hyperparameters
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import evaluate_run as evaluation
from vae_jax.run import files, runtime
from vae_jax.run.lock import WorkdirLock
from vae_jax.single_run import key_reuse_checking
from vae_jax.sweep import aggregate, grid, grid_table, runner
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


def _check_or_write_definition(workdir: Path, definition: dict) -> None:
    path = workdir / files.SWEEP_FILE
    as_json = json.loads(json.dumps(definition))  # tuples as lists, as read back
    files.set_aside_if_damaged(path, "written anew from this command's grid")
    if path.exists():
        recorded = files.read_json(path)
        if recorded != as_json:
            differing = sorted(k for k in {**recorded, **as_json}
                               if recorded.get(k) != as_json.get(k))  # fmt: skip
            raise ConfigError(
                f"--workdir={workdir} holds another sweep: its {files.SWEEP_FILE} differs in "
                f"{differing}; use a new --workdir"
            )
        return
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_json(path, as_json)


def _members(config, cells: list[grid.Cell], seeds, workdir: Path) -> list[runner.Member]:
    return [
        runner.Member(
            grid.cell_config(config, cell, seed),
            grid.cell_workdir(workdir, cell.name, seed),
            f"{cell.name}, seed {seed}",
        )
        for cell in cells
        for seed in seeds
    ]


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
    workdir = files.workdir_path(workdir)
    runtime.apply_runtime_config(config)
    task_index, num_tasks = task_from_environment(task_index, num_tasks)
    cells = grid.make_cells(config, list(grid_specs), list(zip_specs))
    groups = group_cells(config, cells)
    share = task_share(groups, task_index, num_tasks)
    if evaluate:
        evaluation.resolve_options(config.evaluation, num_importance_samples, None, None)
    planned = []
    for group in share:
        members = _members(config, group, seeds, workdir)
        config_checks.check_all(members[0].config)
        runner.check_no_early_stopping(members[0].config)
        left = [m for m in members if not runner.trained(m, set_aside=False)]
        runner.check_strategy(members[0].config, strategy, len(left) or len(members))
        for member in members:
            resume.check_workdir(member.workdir, member.config)
        planned.append(members)
    datasets: dict[str, object] = {}
    for members in planned:  # every dataset read before any work: a data error leaves nothing
        _dataset_for(members[0].config, datasets)
    definition = sweep_definition(
        config, seeds, grid_specs, zip_specs, cells, groups, strategy=strategy, evaluate=evaluate
    )
    _check_or_write_definition(workdir, definition)
    print(f"task {task_index} of {num_tasks}: {sum(len(g) for g in share)} of {len(cells)} "
          f"cells in {len(share)} of {len(groups)} programs, {len(seeds)} seeds each")  # fmt: skip
    for number, members in enumerate(planned, start=1):
        group_config = members[0].config
        status = _train_and_evaluate_group(
            group_config, members, datasets, strategy, evaluate, num_importance_samples,
            description=f"program {number}/{len(planned)}: {len(members)} runs",
            retry_failed=retry_failed,
        )  # fmt: skip
        if status != "complete":
            return {"status": status}
    if num_tasks > 1:
        print(f"task {task_index} done; when every task is done: python -m experiments.sweep "
              f"--workdir={workdir} --aggregate")  # fmt: skip
        return {"status": "complete", "table": None}
    return {"status": "complete", "table": aggregate_sweep(workdir)}


def _dataset_for(config, datasets: dict):
    """One load per distinct data config (and likelihood, which sets preprocessing)."""
    key = json.dumps([resume.config_as_json(config)["data"], config.model.likelihood])
    if key not in datasets:
        with key_reuse_checking(config):
            datasets[key] = load_dataset(config)
    return datasets[key]


def _train_and_evaluate_group(
    config, members, datasets, strategy, evaluate, num_importance_samples, *, description,
    retry_failed,
) -> str:  # fmt: skip
    """``runner.train_and_evaluate_group`` with the group's run directories locked."""
    dataset = _dataset_for(config, datasets)
    with contextlib.ExitStack() as owned, key_reuse_checking(config):
        for member in members:
            owned.enter_context(WorkdirLock(member.workdir, f"grid sweep, {member.label}"))
        return runner.train_and_evaluate_group(
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
    table = grid_table.write_grid_table(
        workdir,
        definition["fields"],
        definition["cells"],
        definition["seeds"],
        require_evaluation=definition["evaluate"],
    )
    grid_table.print_summary(table)
    return table
