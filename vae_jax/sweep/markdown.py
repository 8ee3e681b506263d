"""The markdown of every sweep table (``sweep_table.md``) and the lines the terminal
shows: the seed table (a row per metric, a column per seed) and the grid table (a row per
cell), from the tables ``vae_jax.sweep.statistics`` fills."""

from __future__ import annotations

import math

# The metrics of the grid's table, in this order (those that some cell has).
HEADLINE_METRICS = (
    "test/nll_nats",
    "test/elbo",
    "validation/elbo",
    "train/elbo",
    "test/active_units",
)


def seed_cell(value) -> str:
    """A seed table's number: 4 significant digits; ``–`` for none or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def number(value, digits: int = 5) -> str:
    """A grid table's number: ``digits`` significant digits; ``–`` for none or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def value_text(value) -> str:
    """A swept value as written in cell names (a tuple, a list in JSON, joined by ':')."""
    if isinstance(value, list | tuple):
        return ":".join(str(v) for v in value)
    return str(value)


def seed_table(table: dict) -> str:
    """The seed sweep's page: a row per metric, its value per seed, mean, std, interval."""
    seeds = table["seeds"]
    header = (
        "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | 95% interval |"
    )
    lines = ["# Sweep", "", header, "|" + "---|" * (len(seeds) + 4)]
    for name, row in table["metrics"].items():
        cells = [seed_cell(row["per_seed"][str(s)]) for s in seeds]
        interval = f"[{seed_cell(row['ci95_low'])}, {seed_cell(row['ci95_high'])}]"
        lines.append(
            f"| {name} | " + " | ".join(cells)
            + f" | {seed_cell(row['mean'])} | {seed_cell(row['std'])} | {interval} |"
        )  # fmt: skip
    lines += ["", "std: sample standard deviation over seeds; 95% interval: Student's t.", ""]
    if table.get("missing"):
        lines += ["## Missing", ""]
        lines += [f"- seed {m['seed']}: {m['why']}" for m in table["missing"]]
        lines.append("")
    return "\n".join(lines)


def summary_text(row: dict | None) -> str:
    """``mean ± std [low, high]``; only the mean when there is one seed; ``–`` for none."""
    if row is None:
        return "–"
    if row["n"] < 2:
        return f"{number(row['mean'])} (1 seed)"
    return (
        f"{number(row['mean'])} ± {number(row['std'], 3)} "
        f"[{number(row['ci95_low'])}, {number(row['ci95_high'])}]"
    )


def best_lines(table: dict) -> list[str]:
    """One line per metric with a direction: the best cell and its mean."""
    order = [n for n in HEADLINE_METRICS if n in table["best"]]
    order += [n for n in table["best"] if n not in order]
    lines = []
    for name in order:
        best = table["best"][name]
        n = next(c for c in table["cells"] if c["name"] == best["cell"])["metrics"][name]["n"]
        lines.append(
            f"{name} ({best['direction']} is better): {best['cell']} "
            f"mean {number(best['mean'])} over {n} seed(s)"
        )
    return lines


def missing_lines(table: dict) -> list[str]:
    """One line per (cell, seed) run that is not done: why, and where."""
    return [f"{m['cell']} seed {m['seed']}: {m['why']} ({m['workdir']})" for m in table["missing"]]


def grid_table(table: dict) -> str:
    """The grid sweep's page: a row per cell, the best cells, the missing runs."""
    fields, cells = table["fields"], table["cells"]
    shown = [n for n in HEADLINE_METRICS if any(n in c["metrics"] for c in cells)]
    header = ["seeds done", *shown]
    lines = [
        "# Grid sweep",
        "",
        "| " + " | ".join([*fields, *header]) + " |",
        "|" + "---|" * (len(fields) + len(header)),
    ]
    for cell in cells:
        values = [value_text(cell["values"].get(f)) for f in fields]
        done = f"{len(cell['seeds_done'])}/{len(table['seeds'])}"
        metrics = [summary_text(cell["metrics"].get(n)) for n in shown]
        lines.append("| " + " | ".join([*values, done, *metrics]) + " |")
    lines += ["", "## Best cells", ""]
    lines += [f"- {line}" for line in best_lines(table)] or ["none (no cell is done)"]
    lines += ["", "## Missing", ""]
    lines += [f"- {line}" for line in missing_lines(table)] or ["none"]
    lines += [
        "",
        "mean ± std [95% interval] over each cell's done seeds: std is the sample "
        "standard deviation over seeds (ddof=1); the interval is Student's t 95% of "
        "the mean.",
        "",
    ]
    return "\n".join(lines)
