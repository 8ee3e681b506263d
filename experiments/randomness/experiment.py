"""``run_experiment(workdir)``: every measurement of the randomness study on a trained run.

Keys: ``fold_in(fold_in(eval_stream, 5), purpose_id)`` with the ids in
``experiments.randomness.PURPOSE_IDS``, so the numbers repeat exactly for the same run.
Writes ``<workdir>/randomness/report.json`` and three figures beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from absl import logging

from experiments.randomness import (
    PURPOSE_IDS,
    decomposition,
    determinism,
    figures,
    purpose_key,
    reconstruction,
    training_noise,
)
from vae_jax.core import rng
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.run import files, loading

OUTPUT_DIR = "randomness"


def _check(**options) -> None:
    for name, value in options.items():
        if value < 2:
            raise ConfigError(f"--{name}={value} must be >= 2")


def run_experiment(
    workdir: str | Path,
    *,
    step: int | None = None,
    num_images: int = 8,
    num_draws: int = 2000,
    num_keys: int = 200,
    batch_size: int = 32,
    data_dir: str | None = None,
    sample_counts: tuple[int, ...] = training_noise.SAMPLE_COUNTS,
) -> dict:
    """Measures determinism, the variance decomposition, the cost of sampling before the
    loss and the sources of training noise on the run in ``workdir``."""
    _check(num_images=num_images, num_draws=num_draws, num_keys=num_keys, batch_size=batch_size)
    workdir = Path(workdir).absolute()
    vae, state, record, config = loading.load_state(workdir, step)
    if data_dir:
        config.data.data_dir = data_dir
    dataset = load_dataset(config)
    params = state.params
    streams = rng.make_streams(config.seed)
    test = dataset.test
    x_few = dataset.preprocessing.eval_input(test.images[:num_images])
    x_batch = dataset.preprocessing.eval_input(test.images[:batch_size])
    started = time.perf_counter()

    logging.info("determinism of the networks")
    report = {
        "checkpoint": {"step": int(state.step), "epoch": int(record["epoch"])},
        "likelihood": vae.likelihood,
        "compute_dtype": config.model.compute_dtype,
        "keys": {
            "seed": int(config.seed),
            "derivation": "fold_in(fold_in(eval_stream, randomness_id=5), purpose_id)",
            "purpose_ids": dict(PURPOSE_IDS),
        },
        "data": {
            "protocol": dataset.record["protocol"],
            "fingerprint_sha256": dataset.record["fingerprint_sha256"],
        },
        "determinism": determinism.measure(vae, params, x_few, purpose_key(streams, "determinism")),
    }
    logging.info("variance decomposition (%d draws)", num_draws)
    posterior = decomposition.posterior_decomposition(
        vae, params, purpose_key(streams, "posterior_draws"), x_few, num_draws
    )
    prior = decomposition.prior_decomposition(
        vae, params, purpose_key(streams, "prior_draws"), num_draws
    )
    report["variance_decomposition"] = {
        "num_draws": num_draws,
        "num_images": num_images,
        "posterior": _without_arrays(posterior),
        "prior": _without_arrays(prior),
        "monte_carlo_check": (
            "residual = measured Var(x) - (E[Var(x|z)] + Var(E[x|z])), summed over pixels, "
            f"with its standard error from {decomposition.NUM_BATCHES} batch means"
        ),
    }
    logging.info("closed-form reconstruction vs sampled x-hat")
    report["sampling_before_the_loss"] = reconstruction.measure(
        vae, params, purpose_key(streams, "reconstruction"), x_batch,
        num_draws=min(num_draws, 1000), num_keys=num_keys,
    )  # fmt: skip
    logging.info("sources of training noise (%d keys)", num_keys)
    noise_key, encoder_key = jax.random.split(purpose_key(streams, "gradient_noise"))
    report["training_noise"] = {
        "batch_size": batch_size,
        "num_keys": num_keys,
        "elbo": training_noise.elbo_noise(
            vae, params, noise_key, x_batch, num_keys=num_keys, sample_counts=sample_counts
        ),
        "encoder_gradients": training_noise.encoder_gradients(
            vae, params, encoder_key, x_batch, num_keys=num_keys
        ),
    }
    folder = workdir / OUTPUT_DIR
    num_bins = config.model.num_bins
    report["figures"] = [
        str(figures.draws_grid(vae, params, purpose_key(streams, "figures"), x_few[:4],
                               folder / "draws.png", num_bins=num_bins)),
        str(figures.variance_bars(posterior, prior, folder / "variance_decomposition.png")),
        str(figures.estimator_bars(report["training_noise"]["elbo"],
                                   report["training_noise"]["encoder_gradients"],
                                   report["sampling_before_the_loss"],
                                   folder / "estimator_variances.png")),
    ]  # fmt: skip
    report["seconds"] = time.perf_counter() - started
    folder.mkdir(parents=True, exist_ok=True)
    files.write_json(folder / "report.json", report)
    return report


def _without_arrays(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if not isinstance(v, np.ndarray)}


def summary_lines(report: dict) -> list[str]:
    """A short printed summary: the answers to both questions in numbers."""
    d = report["determinism"]
    post = report["variance_decomposition"]["posterior"]
    prior = report["variance_decomposition"]["prior"]
    s = report["sampling_before_the_loss"]
    g = s["gradients"]
    rows = {r["num_samples"]: r for r in report["training_noise"]["elbo"] if r["kl"] == "analytic"}
    rows_mc = {r["num_samples"]: r for r in report["training_noise"]["elbo"] if r["kl"] == "mc"}
    enc = report["training_noise"]["encoder_gradients"]
    residual = "residual {:.3g} ± {:.2g}"
    sf = g["score_function_sampled_score"]["mean_variance_per_parameter"]
    cf = g["closed_form_log_likelihood"]["mean_variance_per_parameter"]
    kl_variances = ", ".join(
        f"S={n}: {rows[n]['elbo_variance']:.3g} vs {rows_mc[n]['elbo_variance']:.3g}"
        for n in sorted(rows)
    )
    lines = [
        f"repeated encode: max |difference| {d['encode_max_abs_difference']}; repeated "
        f"decode: {d['decode_max_abs_difference']}; samples of p(x|z) differ in "
        f"{d['decoder_samples_fraction_of_pixels_differing']:.1%} of pixels",
        f"x-hat from z ~ q(z|x): {post['fraction_from_observation_noise']:.1%} of Var(x) from "
        f"p(x|z), {post['fraction_from_latent_draw']:.1%} from the latent draw ("
        + residual.format(post["residual_total_minus_parts"], post["residual_standard_error"])
        + ")",
        f"generation from p(z): {prior['fraction_from_observation_noise']:.1%} from p(x|z), "
        f"{prior['fraction_from_latent_draw']:.1%} from z ("
        + residual.format(prior["residual_total_minus_parts"], prior["residual_standard_error"])
        + ")",
        f"closed-form log p(x|z) {s['closed_form_log_likelihood']:.2f} nats; sampled x-hat "
        f"squared error estimates {s['squared_error_exact_expectation']:.2f} (gap "
        f"{s['gap_squared_error_minus_log_likelihood']:.2f}); exact matches "
        f"{s['exact_match_fraction']:.3g}",
        f"gradient through a Bernoulli sample: max |g| = {g['pathwise_through_sample_max_abs']};"
        f" score-function variance {sf:.3g} vs closed form {cf:.3g}",
        f"ELBO estimate variance, analytic KL vs MC KL: {kl_variances}",
        f"encoder gradient variance, score function / reparameterization: "
        f"{enc['variance_ratio_score_function_over_reparameterization']:.3g}",
    ]
    return lines
