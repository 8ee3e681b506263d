"""Train each row's seeds to their stopping point (or a stated budget), evaluate each once on
the test set, and gather the table's numbers.

Each seed is an ordinary run (``experiments.train`` with the row's config) in
``<workdir>/<row>`` (seed 0) or ``<workdir>/<row>-seed<N>``: a run that is already
finished is left as it is, an unfinished one resumes, and its test evaluation
(``experiments.evaluate``, early stopping's best checkpoint) is reused when it evaluated
the same checkpoint with the same number of samples. Model selection used the validation
split only; the test set is read once per run, here.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from scipy import stats

from experiments.reproductions import rows as rows_lib
from vae_jax.errors import ConfigError
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.run import files
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate

EXIT_STOPPED = 75  # as experiments.train: stopped by a signal, the same command resumes


class Budget(NamedTuple):
    """What a row may use here; None: the protocol's own (``rows_lib.PROTOCOL_*``)."""

    epochs: int | None = None
    test_images: int | None = None
    samples: int | None = None
    train_images: int | None = None  # the first N of the training file (validation: 1/6)


def parse_row_values(values: list[str], flag: str) -> dict[str, int]:
    """``["row:N", ...]`` -> ``{row: N}``; one line naming the flag for a bad entry."""
    parsed = {}
    for entry in values:
        name, _, number = entry.partition(":")
        if name not in rows_lib.BY_NAME:
            raise ConfigError(f"--{flag}: unknown row {name!r}; rows: {list(rows_lib.BY_NAME)}")
        try:
            parsed[name] = int(number)
        except ValueError:
            raise ConfigError(f"--{flag}={entry!r}: give row:N with an integer N") from None
        if parsed[name] < 1:
            raise ConfigError(f"--{flag}={entry!r}: N must be >= 1")
    return parsed


def seed_workdir(workdir: Path, row: rows_lib.Row, seed: int) -> Path:
    return workdir / (row.name if seed == 0 else f"{row.name}-seed{seed}")


def row_config(row: rows_lib.Row, seed: int, budget: Budget, data_dir: str | None):
    """The row's config with the seed and the budget applied."""
    config = row.config()
    config.seed = seed
    if budget.epochs:
        config.training.num_epochs = budget.epochs
    if budget.test_images:
        config.data.limit_test = budget.test_images
    if budget.train_images:
        config.data.limit_train = budget.train_images
    if data_dir:
        config.data.data_dir = data_dir
    return config


# Recorded protocol versions: a started run resumes with the ones it recorded.
RECORDED_VERSIONS = ("data.binarization_version", "model.mixture_density_version")


def keep_recorded_versions(config, workdir: Path):
    """``config`` for the run in ``workdir``: a started run keeps the versions it recorded
    (``RECORDED_VERSIONS``: the dynamic binarization's and the mixture prior density's; 1
    if it started before the field existed), so a row trained with version 1 resumes as it
    was; a new run takes the row's (2)."""
    if files.run_started(workdir):
        recorded = files.read_config(workdir)
        for field in RECORDED_VERSIONS:
            group, name = field.split(".")
            config[group][name] = recorded[group][name]
    return config


def _finished(workdir: Path, config) -> bool:
    """A complete run: stopped early, or trained its ``num_epochs``."""
    report_path = workdir / files.REPORT_FILE
    if not report_path.exists():
        return False
    report = files.read_json(report_path)
    if report.get("status") != "complete":
        return False
    stopped = report.get("early_stopping", {}).get("stopped_early", False)
    return stopped or report.get("epochs_completed", 0) >= config.training.num_epochs


def _evaluation(workdir: Path, samples: int) -> dict:
    """The run's test evaluation at ``samples`` importance samples: reused if it has one of
    the checkpoint it would load, else computed (and written into its report)."""
    report = files.read_json(workdir / files.REPORT_FILE)
    existing = report.get("evaluation")
    best_step = report.get("early_stopping", {}).get("best_step", report.get("steps"))
    if (
        existing
        and not existing.get("stale")
        and existing.get("num_importance_samples") == samples
        and existing.get("checkpoint", {}).get("step") == best_step
    ):
        return existing
    return evaluate_run(workdir, num_importance_samples=samples)


def run_seed(row, seed: int, workdir: Path, budget: Budget, data_dir: str | None) -> dict:
    """Trains (or finds trained) and evaluates one seed of a row; returns its numbers."""
    path = seed_workdir(workdir, row, seed)
    config = keep_recorded_versions(row_config(row, seed, budget, data_dir), path)
    if not _finished(path, config):
        trained = train_and_evaluate(config, path)
        if trained.get("status") != "complete":  # a signal: saved, resumable
            raise SystemExit(EXIT_STOPPED)
    samples = budget.samples or rows_lib.PROTOCOL_SAMPLES
    evaluation = _evaluation(path, samples)
    report = files.read_json(path / files.REPORT_FILE)
    records = read_metrics(path)
    epoch_seconds = [r["time/epoch_seconds"] for r in records if "time/epoch_seconds" in r]
    stopping = report.get("early_stopping", {})
    return {
        "seed": seed,
        "workdir": str(path),
        "test_nll": evaluation["test_nll"]["nats"],
        "test_nll_standard_error": evaluation["test_nll"]["standard_error"],
        "test_elbo": evaluation["test_elbo"]["elbo"],
        "active_units": evaluation["latent"]["active_units"],
        "evaluated_epoch": evaluation["checkpoint"]["epoch"],
        "epochs_trained": report["epochs_completed"],
        "max_epochs": config.training.num_epochs,
        "stopped_early": bool(stopping.get("stopped_early", False)),
        "best_epoch": stopping.get("best_epoch"),
        "best_validation_elbo": stopping.get("best_validation_elbo"),
        "test_images": evaluation["num_examples"],
        "train_images": report["data"]["num_examples"]["train"],
        "importance_samples": evaluation["num_importance_samples"],
        "train_seconds": float(np.sum(epoch_seconds)),
        "median_epoch_seconds": float(np.median(epoch_seconds)) if epoch_seconds else None,
        "evaluation_seconds": evaluation.get("seconds"),
        "validation_curve": [
            [r["epoch"], r["validation/elbo"]] for r in records if "validation/elbo" in r
        ],
    }


def interval(values: list[float], confidence: float = 0.95) -> float | None:
    """Half-width of the Student-t interval of the mean (None for one value)."""
    if len(values) < 2:
        return None
    sem = np.std(values, ddof=1) / np.sqrt(len(values))
    return float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sem)


def summarize_row(row: rows_lib.Row, seeds: list[dict]) -> dict:
    """The row of the table: ours over seeds against the published number."""
    published, published_pm = row.published or (None, None)
    nlls = [s["test_nll"] for s in seeds]
    ours = float(np.mean(nlls))
    half_width = interval(nlls)
    short_of_protocol = {
        "training": any(
            not s["stopped_early"] and s["max_epochs"] < rows_lib.PROTOCOL_EPOCHS for s in seeds
        ),
        "training images": any(s["train_images"] < rows_lib.PROTOCOL_TRAIN_IMAGES for s in seeds),
        "test images": any(s["test_images"] < rows_lib.PROTOCOL_TEST_IMAGES for s in seeds),
        "importance samples": any(
            s["importance_samples"] < rows_lib.PROTOCOL_SAMPLES for s in seeds
        ),
    }
    reduced = [name for name, short in short_of_protocol.items() if short]
    difference = None if published is None else ours - published
    # Within the two intervals: |difference| <= published ± + ours (the standard error of
    # the test estimate when one seed gives no interval over runs).
    ours_pm = (
        half_width if half_width is not None else max(s["test_nll_standard_error"] for s in seeds)
    )
    return {
        "name": row.name,
        "label": row.label,
        "config": row.config_path,
        "published": published,
        "published_plus_minus": published_pm,
        "ours": ours,
        "ours_interval_95": half_width,
        "num_seeds": len(seeds),
        "difference": difference,
        "within_intervals": (
            None if difference is None else abs(difference) <= published_pm + ours_pm
        ),
        "budget": reduced,
        "seeds": seeds,
    }


def machine() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return (
        f"{jax.device_count()} {device.platform} device(s) ({kind}), {os.cpu_count()} CPU "
        f"cores, {platform.processor() or platform.machine()}, jax {jax.__version__}"
    )


def run(
    workdir: Path,
    names: list[str],
    seeds: list[int],
    budgets: dict[str, Budget],
    *,
    data_dir: str | None,
    command: str,
) -> dict:
    """Every row of ``names`` with every seed; returns the results (also the page's JSON)."""
    results = {"source": rows_lib.SOURCE, "command": command, "machine": machine(), "rows": []}
    for name in names:
        row = rows_lib.BY_NAME[name]
        budget = budgets.get(name, Budget())
        per_seed = [run_seed(row, seed, workdir, budget, data_dir) for seed in seeds]
        results["rows"].append(summarize_row(row, per_seed))
    return results
