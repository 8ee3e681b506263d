"""The results of each model's sweep, gathered from its run directories into one table:
JSON, a markdown page and a figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.results.models import Model
from vae_jax.evaluation import figures
from vae_jax.run import files
from vae_jax.run.metrics_log import read_metrics
from vae_jax.sweep import aggregate
from vae_jax.sweep.seeds import seed_workdir


def is_evaluated(
    model_dir: Path, seeds: list[int], num_importance_samples: int, epochs: int
) -> bool:
    """Whether every seed's run has trained ``epochs`` epochs and has an evaluation at
    this K (the model is then done)."""
    for seed in seeds:
        path = seed_workdir(model_dir, seed) / files.REPORT_FILE
        if not path.exists():
            return False
        report = files.read_json(path)
        evaluation = report.get("evaluation", {})
        if report.get("epochs_completed") != epochs:
            return False
        if evaluation.get("num_importance_samples") != num_importance_samples:
            return False
    return True


def _per_layer(reports: list[dict]) -> list[dict] | None:
    """Each layer's active units and KL, mean over seeds (None for one layer)."""
    layers = [report["evaluation"].get("layers") for report in reports]
    if not layers[0]:
        return None
    return [
        {
            "layer": entries[0]["layer"],
            "dimensions": entries[0]["dimensions"],
            "active_units": float(np.mean([e["active_units"] for e in entries])),
            "kl": float(np.mean([e["kl"] for e in entries])),
        }
        for entries in zip(*layers, strict=True)
    ]


def trained_commit(run_dir: Path) -> str:
    """The commit of the code that trained a run (its manifest), ``-dirty`` when the work
    tree had changes, ``unknown`` outside git."""
    git = files.read_json(Path(run_dir) / files.MANIFEST_FILE).get("git") or {}
    if not git.get("commit"):
        return "unknown"
    return git["commit"][:12] + ("-dirty" if git.get("dirty") else "")


def model_results(model_dir: Path, model: Model, seeds: list[int]) -> dict:
    """One row of the table: test NLL, ELBO and active units over seeds (mean, 95% t-interval,
    per seed), training speed, time per run, and the validation ELBO per epoch."""
    table = aggregate.build_table(model_dir, seeds)["metrics"]
    reports = [files.read_json(seed_workdir(model_dir, s) / files.REPORT_FILE) for s in seeds]
    records = [read_metrics(seed_workdir(model_dir, s)) for s in seeds]
    # The seeds of a model train in one program: each record's epoch time is the program's.
    program = records[0]
    runs_in_program = int(program[-1].get("time/seeds_in_program", 1))
    timed = program[1:] or program  # the first epoch may include one-off work
    test_seconds = [r["evaluation"]["timings_seconds"]["test_nll_bound"] for r in reports]
    evaluation = reports[0]["evaluation"]
    epochs = sorted({r["epoch"] for r in program if "validation/elbo" in r})
    return {
        "name": model.name,
        "label": model.label,
        "paper": model.paper,
        "overrides": {
            k: list(v) if isinstance(v, tuple) else v for k, v in model.overrides.items()
        },
        "seeds": seeds,
        "commit": trained_commit(seed_workdir(model_dir, seeds[0])),
        "test_nll": table["test/nll_nats"],
        "test_elbo": table["test/elbo"],
        "active_units": table["test/active_units"],
        "latent_dimensions": evaluation["latent"]["dimensions"],
        "layers": _per_layer(reports),
        "num_importance_samples": evaluation["num_importance_samples"],
        "test_examples": evaluation["num_examples"],
        "epochs": reports[0]["epochs_completed"],
        "train_examples_per_second": float(
            np.median([r["time/examples_per_second"] for r in timed])
        ),
        "train_seconds_per_run": float(
            sum(r["time/epoch_seconds"] for r in program) / runs_in_program
        ),
        "test_seconds_per_run": float(np.mean(test_seconds)),
        "validation_elbo": {
            "epochs": epochs,
            "mean": [
                float(
                    np.mean([r["validation/elbo"] for rs in records for r in rs if r["epoch"] == e])
                )
                for e in epochs
            ],
        },
    }


def verdict(row: dict, baseline: dict) -> str:
    """How a model's test NLL compares with the baseline's: lower with the 95% intervals
    apart, higher with them apart, or not told apart."""
    nll, base = row["test_nll"], baseline["test_nll"]
    difference = nll["mean"] - base["mean"]
    if nll["ci95_high"] < base["ci95_low"]:
        return f"{-difference:.2f} nats better than the VAE (intervals apart)"
    if nll["ci95_low"] > base["ci95_high"]:
        return f"{difference:.2f} nats worse than the VAE (intervals apart)"
    return f"{difference:+.2f} nats against the VAE: not told apart (intervals overlap)"


def _interval(summary: dict) -> str:
    return f"[{summary['ci95_low']:.2f}, {summary['ci95_high']:.2f}]"


def _active_units(row: dict) -> str:
    text = f"{row['active_units']['mean']:.1f} / {row['latent_dimensions']}"
    if row["layers"]:
        per_layer = ", ".join(
            f"z_{layer['layer']}: {layer['active_units']:.1f} / {layer['dimensions']}"
            for layer in row["layers"]
        )
        text += f" ({per_layer})"
    return text


def markdown(results: dict, *, figure_name: str, notes: str = "") -> str:
    """The page: how it was made, the table, the figure, the verdicts and the notes."""
    rows, setup = results["models"], results["setup"]
    seeds = ", ".join(str(s) for s in setup["seeds"])
    test = "all" if not setup["test_examples"] else f"the first {setup['test_examples']:,}"
    train = "all" if not setup["train_examples"] else f"the first {setup['train_examples']:,}"
    lines = [
        "# Results: the VAE family on dynamically binarized Fashion-MNIST",
        "",
        "Regenerate this page (its table, `results.json` and the figure) with:",
        "",
        "```",
        results["command"],
        "```",
        "",
        f"Every model is the default experiment (`{setup['base_config']}`) with one part "
        f"changed, trained for **{setup['epochs']} epoch{'s' * (setup['epochs'] != 1)}** "
        f"with seeds {seeds} (one sweep per "
        f"model, all seeds in one program) on {train} training images (less the "
        "validation tenth). The test NLL is the importance-weighted bound at "
        f"K = {setup['num_importance_samples']:,} on {test} test images, with each seed's "
        "own evaluation keys; the interval is the 95% Student-t interval of the mean over "
        f"the {len(setup['seeds'])} seeds. Train examples/s count every seed of the program "
        "(the median epoch); times are per run, on "
        f"{setup['machine']}; trained by the code at commit "
        f"{', '.join(f'`{c}`' for c in setup['commits'])}.",
        "",
        "| model | paper | test NLL (nats) | 95% interval | test ELBO | active units | "
        "train examples/s | train s / run | test s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['label']} | {row['paper']} | {row['test_nll']['mean']:.2f} | "
            f"{_interval(row['test_nll'])} | {row['test_elbo']['mean']:.2f} | "
            f"{_active_units(row)} | {row['train_examples_per_second']:,.0f} | "
            f"{row['train_seconds_per_run']:.0f} | {row['test_seconds_per_run']:.0f} |"
        )
    lines += ["", f"![test NLL and validation ELBO of each model]({figure_name})", ""]
    baseline = next((r for r in rows if r["name"] == "vae"), None)
    if baseline is not None:
        lines += ["Against the VAE (test NLL):", ""]
        lines += [
            f"- {row['label']}: {verdict(row, baseline)}" for row in rows if row is not baseline
        ]
        lines.append("")
    if notes:
        lines += [notes.rstrip(), ""]
    return "\n".join(lines)


def figure(results: dict, path: Path) -> Path:
    """Test NLL per model (seeds as dots, mean and 95% interval as a bar) beside each
    model's validation ELBO per epoch (mean over seeds)."""
    import matplotlib.pyplot as plt

    rows = results["models"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = plt.cm.tab10(np.arange(len(rows)) % 10)
    for i, (row, colour) in enumerate(zip(rows, colours, strict=True)):
        nll = row["test_nll"]
        per_seed = [v for v in nll["per_seed"].values() if v is not None]
        left.scatter([i] * len(per_seed), per_seed, color=colour, s=14, alpha=0.6)
        if np.isfinite(nll["ci95_low"]):
            error = [[nll["mean"] - nll["ci95_low"]], [nll["ci95_high"] - nll["mean"]]]
            left.errorbar([i + 0.15], [nll["mean"]], yerr=error, fmt="o", color=colour, capsize=4)
        curve = row["validation_elbo"]
        right.plot(curve["epochs"], curve["mean"], "-o", ms=3, color=colour, label=row["label"])
    left.set_xticks(range(len(rows)), [row["name"] for row in rows], rotation=20)
    left.set_ylabel("test NLL (nats), lower is better")
    left.set_title(f"K = {results['setup']['num_importance_samples']}: seeds and 95% interval")
    right.set_xlabel("epoch")
    right.set_ylabel("validation ELBO (nats)")
    right.set_title("validation ELBO, mean over seeds")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return figures._save(fig, path)
