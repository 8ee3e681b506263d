"""The table and figures of a grid sweep: per cell, every metric per seed with mean,
standard deviation and a 95% interval over the seeds that are done (Student's t), the
best cell of each metric that has a direction, the runs still missing, a figure per swept
field and the mean training curves of every cell.

A (cell, seed) run is done when its ``report.json`` exists and, when the sweep evaluates,
holds an ``"evaluation"`` entry; runs that are not done are listed, never counted.

This module reads the cells' runs and writes the table's files; the numbers are
``vae_jax.sweep.statistics``'s, the page ``vae_jax.sweep.markdown``'s and the figures
``vae_jax.sweep.plots``'s (the seed table uses the same three).
"""

from __future__ import annotations

from pathlib import Path

from vae_jax.run import files
from vae_jax.sweep import markdown as markdown_pages
from vae_jax.sweep import plots, statistics
from vae_jax.sweep.aggregate import seed_metrics, seed_status
from vae_jax.sweep.grid import cell_workdir

# Kept under their older names here (their callers import them from this module).
direction = statistics.direction
markdown = markdown_pages.grid_table
field_figures = plots.field_figures
curves_figure = plots.grid_curves
_panel_metrics = plots.panel_metrics
_field_axis = plots.field_axis
_mean_curve = plots.mean_curve

LOWER_IS_BETTER = statistics.LOWER_IS_BETTER
HIGHER_IS_BETTER = statistics.HIGHER_IS_BETTER
HEADLINE_METRICS = markdown_pages.HEADLINE_METRICS

NOT_EVALUATED = "not evaluated"


def _run_status(run_dir: Path, require_evaluation: bool) -> str | None:
    """None if the run is done, else why not: not trained, failed (with its reason),
    a damaged report (``aggregate.seed_status``) or ``NOT_EVALUATED``."""
    why = seed_status(run_dir)
    if why is not None:
        return why
    if require_evaluation and "evaluation" not in files.read_json(run_dir / files.REPORT_FILE):
        return NOT_EVALUATED
    return None


def _cell_row(workdir: Path, cell: dict, seeds: list[int], require_evaluation: bool):
    """One cell's row of the table, and the (seed, why) of its runs that are not done."""
    per_seed, not_done = {}, []
    for seed in seeds:
        why = _run_status(cell_workdir(workdir, cell["name"], seed), require_evaluation)
        if why is None:
            per_seed[seed] = seed_metrics(cell_workdir(workdir, cell["name"], seed))
        else:
            not_done.append((seed, why))
    metrics = statistics.metric_rows(per_seed, seeds)
    row = {
        "name": cell["name"],
        "values": cell["values"],
        "group": cell.get("group"),
        "seeds_done": list(per_seed),
        "metrics": metrics,
    }
    return row, not_done


def build_grid_table(
    workdir: str | Path,
    fields: list[str],
    cells: list[dict],
    seeds: list[int],
    *,
    require_evaluation: bool,
) -> dict:
    """Every cell's metrics over its done seeds, the best cells and the missing runs."""
    workdir = Path(workdir)
    rows, missing = [], []
    for cell in cells:
        row, not_done = _cell_row(workdir, cell, seeds, require_evaluation)
        rows.append(row)
        missing += [
            {
                "cell": cell["name"],
                "seed": seed,
                "workdir": str(cell_workdir(workdir, cell["name"], seed)),
                "why": why,
            }
            for seed, why in not_done
        ]
    return {
        "fields": list(fields),
        "seeds": list(seeds),
        "cells": rows,
        "best": statistics.best(rows),
        "missing": missing,
    }


def print_summary(table: dict) -> None:
    """The best cells and the missing runs, one line each, for the terminal."""
    for line in markdown_pages.best_lines(table):
        print(f"best {line}")
    for line in markdown_pages.missing_lines(table):
        print(f"missing {line}")


def write_grid_table(
    workdir: str | Path,
    fields: list[str],
    cells: list[dict],
    seeds: list[int],
    *,
    require_evaluation: bool,
) -> dict:
    """Builds the table, writes ``sweep_table.json`` and ``sweep_table.md``, draws the
    figures; returns the table."""
    workdir = Path(workdir)
    table = build_grid_table(workdir, fields, cells, seeds, require_evaluation=require_evaluation)
    files.write_json(workdir / files.SWEEP_TABLE_JSON, table)
    files.write_text(workdir / files.SWEEP_TABLE_MARKDOWN, markdown_pages.grid_table(table))
    plots.field_figures(workdir, table)
    plots.grid_curves(workdir, table)
    return table
