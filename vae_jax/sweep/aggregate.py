"""The sweep table: every metric per seed, with mean, standard deviation and a 95%
interval over seeds (Student's t), as JSON and markdown; and the per-seed curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from vae_jax.evaluation import figures
from vae_jax.run import files
from vae_jax.run.metrics_log import TIMING_PREFIX, read_metrics
from vae_jax.sweep.seeds import seed_workdir

# Evaluation numbers that go into the table, by their path in report.json.
EVALUATION_METRICS = {
    "test/nll_nats": ("test_nll", "nats"),
    "test/nll_bits_per_dim": ("test_nll", "bits_per_dim"),
    "test/elbo": ("test_elbo", "elbo"),
    "test/log_likelihood": ("test_elbo", "log_likelihood"),
    "test/kl": ("test_elbo", "kl"),
    "test/active_units": ("latent", "active_units"),
    "test/mutual_information_nats": ("latent", "mutual_information_nats"),
}


NOT_TRAINED = "not trained"


def seed_status(seed_dir: Path) -> str | None:
    """None if the run in ``seed_dir`` finished training, else why not: not trained,
    failed (with the reason its report records) or a damaged ``report.json`` (the sweep's
    command run again rebuilds it)."""
    path = Path(seed_dir) / files.REPORT_FILE
    if not path.exists():
        return NOT_TRAINED
    damage = files.damage_of(path)
    if damage:
        return f"report.json is damaged ({damage}); run the sweep's command again to rebuild it"
    report = files.read_json(path)
    if report.get("status") == "failed":
        return f"failed: {report.get('reason')}"
    return None if "final" in report else NOT_TRAINED


def seed_metrics(seed_dir: Path) -> dict[str, float]:
    """The final training metrics and the evaluation of one seed's run."""
    report = files.read_json(Path(seed_dir) / files.REPORT_FILE)
    values = {
        k: float(v)
        for k, v in report["final"].items()
        if k not in ("epoch", "step") and not k.startswith(TIMING_PREFIX)
    }
    evaluation = report.get("evaluation", {})
    for name, (group, field) in EVALUATION_METRICS.items():
        if field in evaluation.get(group, {}):
            values[name] = float(evaluation[group][field])
    return values


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation (ddof=1) and the 95% t-interval of the mean."""
    array = np.asarray(values, np.float64)
    n = array.size
    mean = float(array.mean())
    if n < 2:
        return {"mean": mean, "std": float("nan"), "ci95_low": float("nan"),
                "ci95_high": float("nan"), "n": n}  # fmt: skip
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def build_table(workdir: Path, seeds: list[int]) -> dict:
    """Every metric of the seeds that are done; the others listed under ``missing``
    with why (``seed_status``)."""
    status = {seed: seed_status(seed_workdir(workdir, seed)) for seed in seeds}
    per_seed = {s: seed_metrics(seed_workdir(workdir, s)) for s in seeds if status[s] is None}
    names = sorted(set().union(*(m.keys() for m in per_seed.values())))
    return {
        "seeds": seeds,
        "missing": [{"seed": s, "why": why} for s, why in status.items() if why],
        "metrics": {
            name: {
                "per_seed": {str(s): per_seed.get(s, {}).get(name) for s in seeds},
                **summarize([m[name] for m in per_seed.values() if name in m]),
            }
            for name in names
        },
    }


def markdown(table: dict) -> str:
    seeds = table["seeds"]
    header = (
        "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | 95% interval |"
    )
    lines = ["# Sweep", "", header, "|" + "---|" * (len(seeds) + 4)]
    for name, row in table["metrics"].items():
        cells = [_cell(row["per_seed"][str(s)]) for s in seeds]
        interval = f"[{_cell(row['ci95_low'])}, {_cell(row['ci95_high'])}]"
        lines.append(
            f"| {name} | " + " | ".join(cells)
            + f" | {_cell(row['mean'])} | {_cell(row['std'])} | {interval} |"
        )  # fmt: skip
    lines += ["", "std: sample standard deviation over seeds; 95% interval: Student's t.", ""]
    if table.get("missing"):
        lines += ["## Missing", ""]
        lines += [f"- seed {m['seed']}: {m['why']}" for m in table["missing"]]
        lines.append("")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}"


def write_table(workdir: Path, seeds: list[int]) -> dict:
    table = build_table(workdir, seeds)
    files.write_json(Path(workdir) / files.SWEEP_TABLE_JSON, table)
    files.write_text(Path(workdir) / files.SWEEP_TABLE_MARKDOWN, markdown(table))
    return table


def print_table(table: dict) -> None:
    for name in ("validation/elbo", "test/nll_nats", "test/elbo", "test/active_units"):
        if name in table["metrics"]:
            row = table["metrics"][name]
            interval = f"[{row['ci95_low']:.3f}, {row['ci95_high']:.3f}]"
            print(f"{name}: mean {row['mean']:.3f}, std {row['std']:.3f}, "
                  f"95% {interval} over {row['n']} seeds")  # fmt: skip
    for missing in table.get("missing", []):
        print(f"missing seed {missing['seed']}: {missing['why']}")


def curves_figure(workdir: Path, seeds: list[int]) -> Path:
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
    return figures._save(fig, Path(workdir) / files.FIGURES_DIR / files.SWEEP_CURVES_FIGURE)
