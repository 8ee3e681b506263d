"""The sweep table: every metric per seed, with mean, standard deviation and a 95%
interval over seeds (Student's t), as JSON and markdown; and the per-seed curves.

This module reads the seeds' runs and writes the table's files; the numbers are
``vae_jax.sweep.statistics``'s, the page ``vae_jax.sweep.markdown``'s and the figure
``vae_jax.sweep.plots``'s (the grid's table uses the same three).
"""

from __future__ import annotations

from pathlib import Path

from vae_jax.run import files
from vae_jax.run.metrics_log import TIMING_PREFIX
from vae_jax.sweep import markdown as markdown_pages
from vae_jax.sweep import plots, statistics
from vae_jax.sweep.seeds import seed_workdir

# Kept under their older names here (their callers import them from this module).
summarize = statistics.summarize
markdown = markdown_pages.seed_table
curves_figure = plots.seed_curves

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


def build_table(workdir: Path, seeds: list[int]) -> dict:
    """Every metric of the seeds that are done; the others listed under ``missing``
    with why (``seed_status``)."""
    status = {seed: seed_status(seed_workdir(workdir, seed)) for seed in seeds}
    per_seed = {s: seed_metrics(seed_workdir(workdir, s)) for s in seeds if status[s] is None}
    return {
        "seeds": seeds,
        "missing": [{"seed": s, "why": why} for s, why in status.items() if why],
        "metrics": statistics.metric_rows(per_seed, seeds),
    }


def write_table(workdir: Path, seeds: list[int]) -> dict:
    table = build_table(workdir, seeds)
    files.write_json(Path(workdir) / files.SWEEP_TABLE_JSON, table)
    files.write_text(Path(workdir) / files.SWEEP_TABLE_MARKDOWN, markdown_pages.seed_table(table))
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
