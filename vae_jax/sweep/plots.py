"""The figures of every sweep table: a seed sweep's per-seed curves, a grid's figure per
swept field (means with 95% intervals) and its mean curves per cell. Drawing only: the
numbers come from ``vae_jax.sweep.statistics``, the files through
``vae_jax.evaluation.figures.save``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from vae_jax.evaluation import figures
from vae_jax.run import files
from vae_jax.run.metrics_log import read_metrics
from vae_jax.sweep import statistics
from vae_jax.sweep.grid import cell_workdir
from vae_jax.sweep.markdown import value_text
from vae_jax.sweep.seeds import seed_workdir


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def field_axis(values: list) -> tuple[list[float], str, list[str]]:
    """x positions, scale (``"log"``, ``"linear"`` or ``"categorical"``) and tick labels
    for a field's distinct values: numbers at their value (log when all are positive
    and span a factor of 10 or more), anything else at 0, 1, ... in the given order."""
    if values and all(_is_number(v) for v in values):
        positive = all(v > 0 for v in values)
        scale = "log" if positive and max(values) / min(values) >= 10 else "linear"
        return [float(v) for v in values], scale, [value_text(v) for v in values]
    return [float(i) for i in range(len(values))], "categorical", [value_text(v) for v in values]


def panel_metrics(table: dict) -> list[str]:
    """Test NLL and test ELBO when some cell has them, else the validation ELBO."""
    cells = table["cells"]
    shown = [n for n in ("test/nll_nats", "test/elbo") if any(n in c["metrics"] for c in cells)]
    return shown or ["validation/elbo"]


def _distinct(values: list) -> list:
    """Distinct values in order of first appearance (lists from JSON compared as text)."""
    seen, out = set(), []
    for value in values:
        if value_text(value) not in seen:
            seen.add(value_text(value))
            out.append(value)
    return out


def _lines_of_field(table: dict, field: str) -> dict[str, list[dict]]:
    """The cells grouped by the values of the other swept fields, labelled with them."""
    others = [f for f in table["fields"] if f != field]
    lines: dict[str, list[dict]] = {}
    for cell in table["cells"]:
        label = ", ".join(f"{f}={value_text(cell['values'].get(f))}" for f in others)
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
    x, scale, labels = field_axis(values)
    position = {value_text(v): p for v, p in zip(values, x, strict=True)}
    x_of = {c["name"]: position[value_text(c["values"].get(field))] for c in table["cells"]}
    metrics = panel_metrics(table)
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
        ax.set_title(metric + better.get(statistics.direction(metric), ""), fontsize=10)
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
    return figures.save(fig, workdir / files.FIGURES_DIR / name)


def field_figures(workdir: str | Path, table: dict) -> list[Path]:
    """One figure per swept field: its values on x, the metrics' means on y, a line per
    combination of the other fields' values."""
    return [_field_figure(Path(workdir), table, field) for field in table["fields"]]


def mean_curve(run_dirs: list[Path], key: str) -> tuple[list[int], list[float]]:
    """The mean over the runs in ``run_dirs`` of ``key`` per epoch, at the epochs every
    run recorded it (``statistics.mean_curve``)."""
    per_run = [{r["epoch"]: r[key] for r in read_metrics(d) if key in r} for d in run_dirs]
    return statistics.mean_curve(per_run)


def grid_curves(workdir: str | Path, table: dict) -> Path:
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
            epochs, means = mean_curve(run_dirs, key)
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
    return figures.save(fig, workdir / files.FIGURES_DIR / files.SWEEP_CURVES_FIGURE)


def seed_curves(workdir: Path, seeds: list[int]) -> Path:
    """Per-seed ELBO, log-likelihood and KL curves (train solid, validation dashed)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(seeds)))
    for seed, colour in zip(seeds, colours, strict=True):
        records = read_metrics(seed_workdir(workdir, seed))  # a failed seed: up to its stop
        for ax, name in zip(axes, ("elbo", "log_likelihood", "kl"), strict=True):
            for split, style in (("train", "-"), ("validation", "--")):
                key = f"{split}/{name}"
                points = [(r["epoch"], r[key]) for r in records if key in r]
                if points:
                    label = f"seed {seed}" if split == "train" and name == "elbo" else None
                    ax.plot(*zip(*points, strict=True), style, color=colour, label=label)
    for ax, title in zip(axes, ("ELBO", "E_q log p(x|z)", "KL"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{len(seeds)} seeds: train (solid) and validation (dashed)", fontsize=10)
    fig.tight_layout()
    return figures.save(fig, Path(workdir) / files.FIGURES_DIR / files.SWEEP_CURVES_FIGURE)
