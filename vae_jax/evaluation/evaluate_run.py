"""``evaluate_run(workdir)``: test NLL, ELBO, latent diagnostics and figures of a run.

Keys come from the run's ``eval`` stream (one fixed sub-stream per quantity, one key per
test example), so evaluating the same checkpoint again gives the same numbers. Results
are merged into ``report.json`` under ``"evaluation"``, summarized in ``report.md``, and
returned.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from absl import logging

from vae_jax import manifest, rng
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError, DataError
from vae_jax.evaluation import bounds, diagnostics, figures, report_files
from vae_jax.progress import Progress
from vae_jax.training import loop, run_loading
from vae_jax.training.metrics_writer import read_metrics

FIGURES_DIR = "figures"
# Likelihoods whose log-likelihood is a log-probability of discrete data (bits/dim apply).
DISCRETE_LIKELIHOODS = ("bernoulli", "discretized_logistic")


def _default(value, default):
    return default if value is None else value


def _check_options(num_importance_samples: int, chunk_size: int, batch_size: int) -> None:
    for flag, value in (
        ("--num_importance_samples", num_importance_samples),
        ("--importance_chunk_size", chunk_size),
        ("--batch_size", batch_size),
    ):
        if value < 1:
            raise ConfigError(f"{flag}={value} must be >= 1")


def _check_same_data(workdir: Path, dataset) -> None:
    recorded = manifest.read_json(workdir / loop.MANIFEST_FILE)["data"]["fingerprint_sha256"]
    now = dataset.record["fingerprint_sha256"]
    if recorded.get("test") != now.get("test"):
        raise DataError(
            f"the test data differ from those of the run in {workdir} (sha256 "
            f"{recorded.get('test')} recorded, {now.get('test')} now)"
        )


def evaluate_run(
    workdir: str | Path,
    *,
    step: int | None = None,
    num_importance_samples: int | None = None,
    importance_chunk_size: int | None = None,
    batch_size: int | None = None,
    data_dir: str | None = None,
    make_figures: bool = True,
) -> dict:
    """Evaluates checkpoint ``step`` (default: newest valid) of the run in ``workdir``."""
    workdir = Path(workdir).absolute()
    evaluation = run_loading.load_config(workdir).evaluation
    k = int(_default(num_importance_samples, evaluation.num_importance_samples))
    chunk = int(_default(importance_chunk_size, evaluation.importance_chunk_size))
    batch = int(_default(batch_size, evaluation.batch_size))
    _check_options(k, chunk, batch)
    vae, state, record, config = run_loading.load_state(workdir, step)
    if data_dir:
        config.data.data_dir = data_dir
    dataset = load_dataset(config)
    _check_same_data(workdir, dataset)

    started = time.perf_counter()
    params, test = state.params, dataset.test
    streams = rng.make_streams(config.seed)
    keys = {p: rng.eval_key(streams.eval, p) for p in ("test_iwae", "test_elbo", "figures")}
    keys["mutual_information"] = rng.eval_key(streams.eval, "mutual_information")

    progress = Progress(test.num_examples, unit="example", description=f"test NLL (K={k})")
    try:
        iwae = bounds.importance_weighted_bounds(
            vae, params, keys["test_iwae"], test.images, dataset.preprocessing,
            num_samples=k, chunk_size=chunk, batch_size=batch, on_batch=progress.update,
        )  # fmt: skip
    finally:
        progress.close()
    elbo = bounds.elbo_terms(
        vae, params, keys["test_elbo"], test.images, dataset.preprocessing,
        num_samples=evaluation.num_elbo_samples, batch_size=batch,
    )  # fmt: skip
    means, log_scales = diagnostics.posterior_parameters(
        vae, params, test.images, dataset.preprocessing, batch
    )
    activity, active = diagnostics.active_units(means)
    result = {
        "checkpoint": {"step": int(state.step), "epoch": int(record["epoch"])},
        "split": "test",
        "num_examples": test.num_examples,
        "num_importance_samples": k,
        "importance_chunk_size": chunk,
        "keys": {
            "seed": int(config.seed),
            "derivation": "fold_in(fold_in(eval_stream, purpose_id), example_index)",
            "purpose_ids": {p: rng.EVAL_PURPOSE_IDS[p] for p in keys},
        },
        "test_nll": _nll_summary(iwae, vae, dataset),
        "test_elbo": _elbo_summary(elbo, evaluation.num_elbo_samples),
        "latent": {
            "dimensions": vae.latent_dim,
            "active_units": int(active.sum()),
            "activity_threshold": diagnostics.ACTIVITY_THRESHOLD,
            "activity": activity.tolist(),
            "kl_per_dim": diagnostics.kl_per_dimension(means, log_scales).tolist(),
            "mutual_information_nats": diagnostics.mutual_information(
                keys["mutual_information"], means, log_scales
            ),
            "mutual_information_upper_bound_log_n": float(np.log(test.num_examples)),
        },
        "data": {
            "dataset": dataset.name,
            "protocol": dataset.record["protocol"],
            "fingerprint_sha256": dataset.record["fingerprint_sha256"],
        },
    }
    if make_figures:
        result["figures"] = _make_figures(
            workdir, vae, params, keys["figures"], dataset, config, means
        )
    result["seconds"] = time.perf_counter() - started
    report_files.write_evaluation(workdir, result)
    return result


def _nll_summary(iwae: np.ndarray, vae, dataset) -> dict:
    bound, standard_error = bounds.mean_and_standard_error(iwae)
    summary = {
        "nats": -bound,
        "standard_error": standard_error,
        "estimator": "importance-weighted bound (Burda et al. 2015), an upper bound on -log p(x)",
    }
    if vae.likelihood in DISCRETE_LIKELIHOODS:
        summary["bits_per_dim"] = bounds.bits_per_dim(-bound, int(np.prod(dataset.image_shape)))
    return summary


def _elbo_summary(elbo: dict, num_samples: int) -> dict:
    value, standard_error = bounds.mean_and_standard_error(elbo["elbo"])
    return {
        "elbo": value,
        "standard_error": standard_error,
        "log_likelihood": float(np.mean(elbo["log_likelihood"], dtype=np.float64)),
        "kl": float(np.mean(elbo["kl"], dtype=np.float64)),
        "num_samples": int(num_samples),
        "kl_estimator": "analytic",
    }


def _make_figures(workdir: Path, vae, params, key, dataset, config, means) -> list[str]:
    folder = workdir / FIGURES_DIR
    test = dataset.test
    count = min(config.evaluation.num_figure_examples, test.num_examples)
    x = dataset.preprocessing.eval_input(test.images[:count])
    keys = jax.random.split(key, 3)
    num_bins = config.model.num_bins
    paths = [
        figures.reconstructions(vae, params, keys[0], x, folder / "reconstructions.png",
                                num_bins=num_bins),
        figures.generations(vae, params, keys[1], folder / "generations.png", num_bins=num_bins),
        figures.interpolation(vae, params, dataset.preprocessing.eval_input(test.images[:2]),
                              folder / "interpolation.png", num_bins=num_bins),
        figures.training_curves(read_metrics(workdir), folder / "training_curves.png"),
    ]  # fmt: skip
    if vae.latent_dim == 2:
        paths.append(figures.latent_manifold(vae, params, folder / "latent_manifold.png",
                                             num_bins=num_bins))  # fmt: skip
        paths.append(figures.latent_scatter(means, np.asarray(test.labels),
                                            folder / "latent_scatter.png"))  # fmt: skip
    logging.info("figures in %s", folder)
    return [str(p) for p in paths]
