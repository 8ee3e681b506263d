"""The two layouts of the one sweep driver (``grid_runner.run_cells``): how a sweep names
and locks its runs, what its ``sweep.json`` records and which table it writes.

A seed sweep is a grid of one cell, the config as it is: its runs are the grid's
(``<workdir>/seed_<s>/``, trained, resumed and evaluated by the same code), and only its
bookkeeping differs, kept as its workdirs have it:

- ``SEEDS`` (``runner.run_sweep``): runs labelled ``seed <s>``; the sweep's directory and
  every run are locked for the whole sweep; ``sweep.json`` holds the settings, the strategy
  that ran and why, rewritten by every start; the seed table (``aggregate``).
- ``GRID`` (``grid_runner.run_grid_sweep``): runs labelled ``<cell>, seed <s>``; each
  program's runs are locked while it trains, so tasks share the workdir; ``sweep.json``
  holds the grid, which every task checks; the grid table (``grid_table``).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from vae_jax.errors import ConfigError
from vae_jax.run import files, manifest
from vae_jax.run.lock import WorkdirLock
from vae_jax.sweep import aggregate, grid, grid_table, runs
from vae_jax.sweep.seeds import seed_workdir
from vae_jax.training import resume


class SeedLayout:
    """One cell (the config as it is) over seeds, one task."""

    name = "seeds"

    def members(self, config, cells, seeds, workdir: Path) -> list[runs.Member]:
        (cell,) = cells
        return [
            runs.Member(
                grid.cell_config(config, cell, s), grid.cell_workdir(workdir, cell.name, s),
                f"seed {s}",
            )
            for s in seeds
        ]  # fmt: skip

    def num_runs_to_place(self, members, left) -> int:
        """Every seed is placed, trained or not (the strategy is checked for all)."""
        return len(members)

    @contextlib.contextmanager
    def recording(self, plan):
        """Locks the sweep and every run, then writes ``sweep.json`` with the strategy
        chosen for all seeds; yields it."""
        with contextlib.ExitStack() as owned:
            owned.enter_context(WorkdirLock(plan.workdir, "sweep"))
            for member in plan.all_members:
                owned.enter_context(WorkdirLock(member.workdir, f"sweep, {member.label}"))
            chosen, reason = runs.resolve_strategy(plan.strategy, len(plan.seeds))
            plan.workdir.mkdir(parents=True, exist_ok=True)
            files.write_json(
                plan.workdir / files.SWEEP_FILE,
                {
                    "seeds": plan.seeds,
                    "strategy_requested": plan.strategy,
                    "strategy": chosen,
                    "why": {"reason": reason},
                    "seed_workdirs": [str(seed_workdir(plan.workdir, s)) for s in plan.seeds],
                    "config": resume.config_as_json(plan.config),
                    "environment": manifest.environment(),
                },
            )
            yield chosen

    def group_locks(self, members) -> list[tuple[Path, str]]:
        return []  # held for the whole sweep (``recording``)

    def description(self, number: int, total: int, members) -> str:
        return f"sweep of {len(members)} seeds"

    def finish(self, plan, chosen) -> dict:
        table = aggregate.write_table(plan.workdir, plan.seeds)
        aggregate.curves_figure(plan.workdir, plan.seeds)
        aggregate.print_table(table)
        return {"status": "complete", "strategy": chosen, "table": table}


class GridLayout:
    """Cells times seeds, shared among tasks."""

    name = "grid"

    def members(self, config, cells, seeds, workdir: Path) -> list[runs.Member]:
        return [
            runs.Member(
                grid.cell_config(config, cell, seed),
                grid.cell_workdir(workdir, cell.name, seed),
                f"{cell.name}, seed {seed}",
            )
            for cell in cells
            for seed in seeds
        ]

    def num_runs_to_place(self, members, left) -> int:
        """The runs left to train are placed (all of them when none is)."""
        return len(left) or len(members)

    @contextlib.contextmanager
    def recording(self, plan):
        """Checks ``sweep.json`` is this grid's (writes it if absent) and says this task's
        share; runs are locked group by group (``group_locks``)."""
        check_or_write_definition(plan.workdir, plan.definition())
        share = plan.share
        print(f"task {plan.task_index} of {plan.num_tasks}: {sum(len(g) for g in share)} of "
              f"{len(plan.cells)} cells in {len(share)} of {len(plan.groups)} programs, "
              f"{len(plan.seeds)} seeds each")  # fmt: skip
        yield None

    def group_locks(self, members) -> list[tuple[Path, str]]:
        return [(m.workdir, f"grid sweep, {m.label}") for m in members]

    def description(self, number: int, total: int, members) -> str:
        return f"program {number}/{total}: {len(members)} runs"

    def finish(self, plan, chosen) -> dict:
        if plan.num_tasks > 1:
            print(f"task {plan.task_index} done; when every task is done: python -m "
                  f"experiments.sweep --workdir={plan.workdir} --aggregate")  # fmt: skip
            return {"status": "complete", "table": None}
        return {"status": "complete", "table": aggregate_grid(plan.workdir)}


SEEDS, GRID = SeedLayout(), GridLayout()


def check_or_write_definition(workdir: Path, definition: dict) -> None:
    """A grid's ``sweep.json``: written if absent; one that differs is refused in one line."""
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


def aggregate_grid(workdir: Path) -> dict:
    """The grid table of the cells that are done, as ``sweep.json`` defines the grid."""
    definition = files.read_json(workdir / files.SWEEP_FILE)
    table = grid_table.write_grid_table(
        workdir,
        definition["fields"],
        definition["cells"],
        definition["seeds"],
        require_evaluation=definition["evaluate"],
    )
    grid_table.print_summary(table)
    return table
