"""The table and figures of a grid sweep: per cell, every metric per seed with mean,
standard deviation and a 95% interval over the seeds that are done (Student's t), the
best cell of each metric that has a direction, the runs still missing, a figure per swept
field and the mean training curves of every cell.

A (cell, seed) run is done when its ``report.json`` exists and, when the sweep evaluates,
holds an ``"evaluation"`` entry; runs that are not done are listed, never counted.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vae_jax.evaluation import figures
from vae_jax.run import files
from vae_jax.run.metrics_log import read_metrics
from vae_jax.sweep.aggregate import seed_metrics, seed_status, summarize
from vae_jax.sweep.grid import cell_workdir

# Substrings of a metric's name that say which way is better; "lower" is checked first.
LOWER_IS_BETTER = ("nll", "bits_per_dim", "loss")
HIGHER_IS_BETTER = ("elbo", "log_likelihood", "iwae_bound", "active_units", "mutual_information")

# The metrics of the markdown table, in this order (those that some cell has).
HEADLINE_METRICS = (
    "test/nll_nats",
    "test/elbo",
    "validation/elbo",
    "train/elbo",
    "test/active_units",
)

NOT_EVALUATED = "not evaluated"


def direction(metric: str) -> str | None:
    """``"lower"`` or ``"higher"`` (which is better) from the metric's name, or None."""
    if any(part in metric for part in LOWER_IS_BETTER):
        return "lower"
    if any(part in metric for part in HIGHER_IS_BETTER):
        return "higher"
    return None


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
    names = sorted(set().union(*(m.keys() for m in per_seed.values())))
    metrics = {
        name: {
            "per_seed": {str(s): per_seed.get(s, {}).get(name) for s in seeds},
            **summarize([m[name] for m in per_seed.values() if name in m]),
        }
        for name in names
    }
    row = {
        "name": cell["name"],
        "values": cell["values"],
        "group": cell.get("group"),
        "seeds_done": list(per_seed),
        "metrics": metrics,
    }
    return row, not_done


def _best(rows: list[dict]) -> dict:
    """Per metric with a direction, the cell with the best mean (the first on a tie);
    cells without the metric or with a mean that is not finite are not candidates."""
    names = sorted({name for row in rows for name in row["metrics"] if direction(name)})
    best = {}
    for name in names:
        candidates = [
            r for r in rows if name in r["metrics"] and math.isfinite(r["metrics"][name]["mean"])
        ]
        if not candidates:
            continue
        sign = 1.0 if direction(name) == "lower" else -1.0
        winner = min(candidates, key=lambda r: sign * r["metrics"][name]["mean"])
        best[name] = {
            "cell": winner["name"],
            "values": winner["values"],
            "mean": winner["metrics"][name]["mean"],
            "direction": direction(name),
        }
    return best


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
        "best": _best(rows),
        "missing": missing,
    }


# --- markdown and terminal --------------------------------------------------------------


def _number(value, digits: int = 5) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _value_text(value) -> str:
    """A swept value as written in cell names (a tuple, a list in JSON, joined by ':')."""
    if isinstance(value, list | tuple):
        return ":".join(str(v) for v in value)
    return str(value)


def _summary_text(row: dict | None) -> str:
    """``mean ± std [low, high]``; only the mean when there is one seed; ``–`` for none."""
    if row is None:
        return "–"
    if row["n"] < 2:
        return f"{_number(row['mean'])} (1 seed)"
    return (
        f"{_number(row['mean'])} ± {_number(row['std'], 3)} "
        f"[{_number(row['ci95_low'])}, {_number(row['ci95_high'])}]"
    )


def _best_lines(table: dict) -> list[str]:
    """One line per metric with a direction: the best cell and its mean."""
    order = [n for n in HEADLINE_METRICS if n in table["best"]]
    order += [n for n in table["best"] if n not in order]
    lines = []
    for name in order:
        best = table["best"][name]
        n = next(c for c in table["cells"] if c["name"] == best["cell"])["metrics"][name]["n"]
        lines.append(
            f"{name} ({best['direction']} is better): {best['cell']} "
            f"mean {_number(best['mean'])} over {n} seed(s)"
        )
    return lines


def _missing_lines(table: dict) -> list[str]:
    return [f"{m['cell']} seed {m['seed']}: {m['why']} ({m['workdir']})" for m in table["missing"]]


def markdown(table: dict) -> str:
    """The ``sweep_table.md`` page: a row per cell, the best cells, the missing runs."""
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
        values = [_value_text(cell["values"].get(f)) for f in fields]
        done = f"{len(cell['seeds_done'])}/{len(table['seeds'])}"
        metrics = [_summary_text(cell["metrics"].get(n)) for n in shown]
        lines.append("| " + " | ".join([*values, done, *metrics]) + " |")
    lines += ["", "## Best cells", ""]
    lines += [f"- {line}" for line in _best_lines(table)] or ["none (no cell is done)"]
    lines += ["", "## Missing", ""]
    lines += [f"- {line}" for line in _missing_lines(table)] or ["none"]
    lines += [
        "",
        "mean ± std [95% interval] over each cell's done seeds: std is the sample "
        "standard deviation over seeds (ddof=1); the interval is Student's t 95% of "
        "the mean.",
        "",
    ]
    return "\n".join(lines)


def print_summary(table: dict) -> None:
    """The best cells and the missing runs, one line each, for the terminal."""
    for line in _best_lines(table):
        print(f"best {line}")
    for line in _missing_lines(table):
        print(f"missing {line}")


# --- figures ----------------------------------------------------------------------------


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_axis(values: list) -> tuple[list[float], str, list[str]]:
    """x positions, scale (``"log"``, ``"linear"`` or ``"categorical"``) and tick labels
    for a field's distinct values: numbers at their value (log when all are positive
    and span a factor of 10 or more), anything else at 0, 1, ... in the given order."""
    if values and all(_is_number(v) for v in values):
        positive = all(v > 0 for v in values)
        scale = "log" if positive and max(values) / min(values) >= 10 else "linear"
        return [float(v) for v in values], scale, [_value_text(v) for v in values]
    return [float(i) for i in range(len(values))], "categorical", [_value_text(v) for v in values]


def _panel_metrics(table: dict) -> list[str]:
    """Test NLL and test ELBO when some cell has them, else the validation ELBO."""
    cells = table["cells"]
    shown = [n for n in ("test/nll_nats", "test/elbo") if any(n in c["metrics"] for c in cells)]
    return shown or ["validation/elbo"]


def _distinct(values: list) -> list:
    """Distinct values in order of first appearance (lists from JSON compared as text)."""
    seen, out = set(), []
    for value in values:
        if _value_text(value) not in seen:
            seen.add(_value_text(value))
            out.append(value)
    return out


def _lines_of_field(table: dict, field: str) -> dict[str, list[dict]]:
    """The cells grouped by the values of the other swept fields, labelled with them."""
    others = [f for f in table["fields"] if f != field]
    lines: dict[str, list[dict]] = {}
    for cell in table["cells"]:
        label = ", ".join(f"{f}={_value_text(cell['values'].get(f))}" for f in others)
        lines.setdefault(label or "mean over seeds", []).append(cell)
    return lines


def _colours(count: int):
    import matplotlib.pyplot as plt

    if count <= 10:
        return [plt.cm.tab10(i) for i in range(count)]
    if count <= 20:
        return [plt.cm.tab20(i) for i in range(count)]
    return list(plt.cm.viridis(np.linspace(0, 0.95, count)))


def _plot_line(ax, cells: list[dict], metric: str, x_of: dict[str, float], colour, shift):
    """One line: the cells' means at their x, error bars (95% interval) where n >= 2.
    Drawn shifted sideways by the transform ``shift`` (so lines at the same x do not hide
    each other's error bars), after the axes' limits were taken from the unshifted data."""
    points = sorted(
        ((x_of[c["name"]], c["metrics"][metric]) for c in cells if metric in c["metrics"]),
        key=lambda point: point[0],
    )
    if not points:
        return None
    x = [p[0] for p in points]
    artists = ax.plot(x, [p[1]["mean"] for p in points], "o-", color=colour)
    bars = [(x0, row) for x0, row in points if row["n"] >= 2 and math.isfinite(row["std"])]
    if bars:
        container = ax.errorbar(
            [b[0] for b in bars],
            [b[1]["mean"] for b in bars],
            fmt="none",
            ecolor=colour,
            capsize=3,
            yerr=[
                [b[1]["mean"] - b[1]["ci95_low"] for b in bars],
                [b[1]["ci95_high"] - b[1]["mean"] for b in bars],
            ],
        )
        artists += [*container.lines[1], *container.lines[2]]  # caps, bars
    for artist in artists:
        artist.set_transform(artist.get_transform() + shift)
    return artists[0]


def _field_figure(workdir: Path, table: dict, field: str) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.transforms import ScaledTranslation

    values = _distinct([c["values"].get(field) for c in table["cells"]])
    x, scale, labels = _field_axis(values)
    position = {_value_text(v): p for v, p in zip(values, x, strict=True)}
    x_of = {c["name"]: position[_value_text(c["values"].get(field))] for c in table["cells"]}
    metrics = _panel_metrics(table)
    lines = _lines_of_field(table, field)
    fig, axes = plt.subplots(
        1,
        len(metrics) + 1,
        figsize=(4.6 * len(metrics) + 3.4, 4),
        gridspec_kw={"width_ratios": [3] * len(metrics) + [2]},
    )
    handles = {}
    for ax, metric in zip(axes[:-1], metrics, strict=True):
        if scale == "log":
            ax.set_xscale("log")
            ax.minorticks_off()
        for j, ((label, cells), colour) in enumerate(
            zip(lines.items(), _colours(len(lines)), strict=True)
        ):
            points = 3.0 * (j - (len(lines) - 1) / 2)  # sideways, in points
            shift = ScaledTranslation(points / 72, 0, fig.dpi_scale_trans)
            handle = _plot_line(ax, cells, metric, x_of, colour, shift)
            if handle is not None:
                handles.setdefault(label, handle)
        ax.set_xticks(x, labels, rotation=30 if scale == "categorical" else 0, fontsize=8)
        if scale == "categorical":
            ax.set_xlim(-0.5, len(x) - 0.5)
        ax.set_xlabel(field)
        better = {"lower": " (lower is better)", "higher": " (higher is better)"}
        ax.set_title(metric + better.get(direction(metric), ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].axis("off")
    if handles:
        axes[-1].legend(list(handles.values()), list(handles), loc="center left", fontsize=7)
    else:
        axes[-1].text(0, 0.5, "no cell is done", fontsize=10)
    fig.suptitle(
        f"{field}: mean over seeds, error bars the 95% interval (Student's t)", fontsize=10
    )
    fig.tight_layout()
    name = files.GRID_FIELD_FIGURE.format(field=field.replace("/", "_"))
    return figures._save(fig, workdir / files.FIGURES_DIR / name)


def field_figures(workdir: str | Path, table: dict) -> list[Path]:
    """One figure per swept field: its values on x, the metrics' means on y, a line per
    combination of the other fields' values."""
    return [_field_figure(Path(workdir), table, field) for field in table["fields"]]


def _mean_curve(run_dirs: list[Path], key: str) -> tuple[list[int], list[float]]:
    """The mean over runs of ``key`` per epoch, at the epochs every run recorded it (a mean
    over a changing set of seeds would jump where one seed's record is absent)."""
    per_run = []
    for run_dir in run_dirs:
        per_run.append({r["epoch"]: r[key] for r in read_metrics(run_dir) if key in r})
    if not per_run:
        return [], []
    epochs = sorted(set.intersection(*(set(r) for r in per_run)))
    return epochs, [float(np.mean([r[e] for r in per_run])) for e in epochs]


def curves_figure(workdir: str | Path, table: dict) -> Path:
    """Validation ELBO (solid) and train ELBO (dashed) per epoch, the mean over each
    cell's done seeds, one colour per cell."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    workdir = Path(workdir)
    done = [c for c in table["cells"] if c["seeds_done"]]
    fig, (ax, legend_ax) = plt.subplots(
        1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]}
    )
    handles = []
    for cell, colour in zip(done, _colours(len(done)), strict=True):
        run_dirs = [cell_workdir(workdir, cell["name"], s) for s in cell["seeds_done"]]
        for key, style in (("validation/elbo", "-"), ("train/elbo", "--")):
            epochs, means = _mean_curve(run_dirs, key)
            if epochs:
                (handle,) = ax.plot(epochs, means, style, color=colour, linewidth=1.2)
                if key == "validation/elbo":
                    handles.append((handle, f"{cell['name']} ({len(run_dirs)} seeds)"))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats)")
    ax.set_title(
        "mean over each cell's done seeds: validation (solid), train (dashed)", fontsize=10
    )
    ax.grid(alpha=0.3)
    legend_ax.axis("off")
    if handles:
        legend_ax.legend(*zip(*handles, strict=True), loc="center left", fontsize=6)
    else:
        legend_ax.text(0, 0.5, "no cell is done", fontsize=10)
    fig.tight_layout()
    return figures._save(fig, workdir / files.FIGURES_DIR / files.SWEEP_CURVES_FIGURE)


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
    files.write_text(workdir / files.SWEEP_TABLE_MARKDOWN, markdown(table))
    field_figures(workdir, table)
    curves_figure(workdir, table)
    return table
