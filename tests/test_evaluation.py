"""Evaluation against exact answers: a linear Gaussian VAE, chunking, diagnostics, figures."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from linear_gaussian import (
    data,
    linear_gaussian_vae,
    posterior_params,
)
from PIL import Image
from run_helpers import run

import vae_jax
from experiments.configs import tiny
from vae_jax.errors import UserFacingError
from vae_jax.evaluation import bounds, diagnostics, per_example, report_files
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.single_run import train_and_evaluate


@dataclasses.dataclass(frozen=True)
class IdentityPreprocessing:
    """The data are already what the model reads (real-valued Gaussian data)."""

    def eval_input(self, stored):
        return stored


# One model object for the whole module, so that compiled evaluators (which close over it)
# can be shared between tests: compiling, not evaluating, is what these tests spend.


def _iwae(vae, params, images, k, *, chunk=None, batch=50, seed=1):
    return bounds.importance_weighted_bounds(
        vae, params, jax.random.key(seed), images, IdentityPreprocessing(),
        num_samples=k, chunk_size=chunk or k, batch_size=batch,
    )  # fmt: skip


@functools.cache
def _shared_evaluator(kind, num_samples, chunk=None):
    """``bounds.make_iwae_evaluator`` / ``make_elbo_evaluator`` (analytic KL) for the
    module's model, compiled once and reused by every test that evaluates the same K on
    300 examples in batches of 50 (a chunk >= K is one chunk: the same program)."""
    vae, preprocessing = linear_gaussian_vae(), IdentityPreprocessing()
    if kind == "iwae":
        return bounds.make_iwae_evaluator(
            vae, preprocessing, num_samples=num_samples, chunk_size=min(chunk, num_samples)
        )
    return bounds.make_elbo_evaluator(vae, preprocessing, num_samples=num_samples)


def _shared(kind, params, images, num_samples, *, chunk=500, seed):
    """What ``bounds.importance_weighted_bounds`` (or ``bounds.elbo_terms``) returns, with
    the shared compiled evaluator: ``evaluate_examples`` in batches of 50."""
    evaluator = _shared_evaluator(kind, num_samples, chunk if kind == "iwae" else None)
    return per_example.evaluate_examples(evaluator, params, jax.random.key(seed), images, 50)


@pytest.mark.slow
def test_exact_posterior_makes_every_bound_exact():
    vae = linear_gaussian_vae()
    params = posterior_params(vae, exact_posterior=True)
    images, exact = data()  # the 300 examples of the next test: its compiled evaluators
    for k in (1, 10, 100):
        np.testing.assert_allclose(_shared("iwae", params, images, k, seed=1), exact, atol=2e-4)
    # log p(x, z) - log q(z|x) is then log p(x) for every z: one draw is exact ...
    elbo = bounds.elbo_terms(
        vae, params, jax.random.key(2), images, IdentityPreprocessing(),
        num_samples=1, batch_size=30, kl="mc",
    )  # fmt: skip
    np.testing.assert_allclose(elbo["elbo"], exact, atol=2e-4)
    # ... while with the analytic KL only the expectation is: E_q log p(x|z) - KL = log p(x).
    elbo = _shared("elbo", params, images, 2000, seed=2)
    assert abs(np.mean(elbo["elbo"] - exact)) < 0.015  # standard error ~0.0013


@pytest.mark.slow
def test_importance_weighted_bound_approaches_the_exact_likelihood_from_below():
    vae = linear_gaussian_vae()
    params = posterior_params(vae, exact_posterior=False)
    images, exact = data()
    means, gaps = [], {}
    for k in (1, 10, 100, 1000, 5000):
        bound = _shared("iwae", params, images, k, chunk=500, seed=1)
        gaps[k] = bound - exact
        means.append(float(np.mean(bound)))
    assert means == sorted(means), means  # non-decreasing in K
    assert means[-1] <= float(np.mean(exact)) + 1e-3  # a lower bound
    standard_error = np.std(gaps[5000], ddof=1) / np.sqrt(len(exact))
    assert abs(np.mean(gaps[5000])) < 3 * standard_error + 1e-4, (
        np.mean(gaps[5000]),
        standard_error,
    )
    # The ELBO (analytic KL; 2000 draws estimate it more closely than 1 would, and share
    # the previous test's compiled evaluator) is below the K=5000 bound.
    elbo = _shared("elbo", params, images, 2000, seed=3)
    assert np.mean(elbo["elbo"]) < means[-1] < np.mean(exact) + 1e-3
    assert np.mean(gaps[1]) < -0.5  # the worse encoder really is worse


@pytest.mark.slow
def test_chunked_padded_evaluation_equals_one_pass():
    vae = linear_gaussian_vae()
    params = posterior_params(vae, exact_posterior=False)
    images, _ = data()
    # All K=100 draws in one chunk, whole batches of 50 (the evaluator compiled above) ...
    one_pass = _shared("iwae", params, images, 100, seed=1)
    # ... and 15 chunks of 7 (the last padded: 105 slots), 8 batches of 40 (the last padded).
    chunked = _iwae(vae, params, images, 100, chunk=7, batch=40)
    assert one_pass.shape == chunked.shape == (300,)
    np.testing.assert_allclose(chunked, one_pass, rtol=1e-6, atol=1e-6)


def test_active_units_are_exactly_the_dimensions_the_encoder_uses(tiny_config):
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    head = params["encoder"]["head"]["latent_params"]
    ignored = [1, 3]  # latent dimensions whose posterior mean ignores x
    kernel = np.asarray(head["kernel"]).copy()
    kernel[:, ignored] = 0.0
    params["encoder"]["head"]["latent_params"] = {**head, "kernel": jnp.asarray(kernel)}
    images = jnp.asarray(np.random.default_rng(0).integers(0, 2, (200, 28, 28, 1)), jnp.uint8)

    class Binary:
        def eval_input(self, stored):
            return stored.astype(jnp.float32)

    means, log_scales = diagnostics.posterior_parameters(vae, params, images, Binary(), 64)
    activity, active = diagnostics.active_units(means)
    assert active.tolist() == [True, False, True, False], activity
    np.testing.assert_allclose(activity[ignored], 0.0, atol=1e-12)
    kl = diagnostics.kl_per_dimension(means, log_scales)
    expected = np.mean(
        0.5 * (np.exp(2 * log_scales) + means**2 - 1) - log_scales, axis=0, dtype=np.float64
    )
    np.testing.assert_allclose(kl, expected, rtol=1e-4)


def test_mutual_information_of_a_gaussian_code():
    # q(z|x) = N(mu_x, sigma^2) with mu_x ~ N(0, tau^2): I(x; z) = 0.5 log(1 + tau^2 / sigma^2).
    tau, sigma, num = 1.0, 0.5, 4000
    means = np.random.default_rng(0).normal(0, tau, size=(num, 1))
    log_scales = np.full((num, 1), np.log(sigma))
    estimate = diagnostics.mutual_information(jax.random.key(0), means, log_scales)
    assert abs(estimate - 0.5 * np.log(1 + tau**2 / sigma**2)) < 0.03


def test_mutual_information_of_separated_codes_reaches_log_n_and_is_saturated():
    """Posteriors far apart (means 10 apart, scale 0.01): each draw is explained by its own
    posterior only, so the estimate is log N (up to the draws' noise) and saturated; the
    Gaussian code above (I = 0.80 nats, N = 4000, log N = 8.29) is far from it."""
    num = 200
    means = 10.0 * np.arange(num, dtype=np.float64)[:, None]
    log_scales = np.full((num, 1), np.log(0.01))
    estimate = diagnostics.mutual_information(jax.random.key(0), means, log_scales)
    assert abs(estimate - np.log(num)) < 0.2, estimate
    assert diagnostics.mutual_information_saturated(estimate, num)
    assert not diagnostics.mutual_information_saturated(0.5 * np.log(5.0), 4000)


@pytest.mark.parametrize(
    ("estimate", "num_examples", "saturated"),
    [(8.95, 10000, True), (8.72, 10000, True), (8.70, 10000, False), (3.0, 10000, False),
     (4.7, 100, True), (4.0, 100, False)],
)  # fmt: skip
def test_mutual_information_is_saturated_within_half_a_nat_of_log_n(
    estimate, num_examples, saturated
):
    """The rule: log N - I < 0.5 nats (log 10000 = 9.21, log 100 = 4.61; an estimate may
    exceed log N by the noise of its draws)."""
    assert diagnostics.SATURATION_GAP_NATS == 0.5
    assert diagnostics.mutual_information_saturated(estimate, num_examples) is saturated


@pytest.mark.slow
def test_report_shows_the_mutual_information_ceiling_and_saturation(evaluated_2d_run):
    """report.json holds the ceiling log N, the saturation flag by the rule and the rule;
    report.md prints the estimate beside its ceiling, says when it is saturated, and
    states the rule."""
    workdir, result = evaluated_2d_run
    latent = json.loads((workdir / "report.json").read_text())["evaluation"]["latent"]
    estimate, num = latent["mutual_information_nats"], result["num_examples"]
    assert latent["mutual_information_upper_bound_log_n"] == pytest.approx(np.log(num))
    assert latent["mutual_information_saturated"] is bool(np.log(num) - estimate < 0.5)
    assert latent["mutual_information_saturated_rule"] == "log N - I < 0.5 nats"
    ceiling = f"(ceiling log N = {np.log(num):.3f}"
    report = (workdir / "report.md").read_text()
    assert f"| mutual information I(x;z) (nats) | {estimate:.3f} {ceiling}" in report
    assert "saturated means log N - I < 0.5 nats" in report
    # A saturated estimate says so, in report.md and on the screen.
    saturated = {**result, "latent": {**result["latent"], "mutual_information_nats": 8.95,
                                      "mutual_information_upper_bound_log_n": float(np.log(1e4)),
                                      "mutual_information_saturated": True}}  # fmt: skip
    assert "| 8.950 (ceiling log N = 9.210, saturated) |" in report_files.markdown(saturated)
    not_saturated = {**saturated, "latent": {**saturated["latent"], "mutual_information_nats": 3.0,
                                             "mutual_information_saturated": False}}  # fmt: skip
    assert "| 3.000 (ceiling log N = 9.210) |" in report_files.markdown(not_saturated)


@pytest.fixture(scope="module")
def evaluated_2d_run(tmp_path_factory, tiny_data_dir):
    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    config.model.latent_dim = 2
    config.training.num_epochs = 2
    workdir = tmp_path_factory.mktemp("eval") / "run"
    train_and_evaluate(config, workdir)
    result = evaluate_run(workdir, num_importance_samples=32, importance_chunk_size=8)
    return workdir, result


FIGURE_SIZES = {  # pixels at figures.DPI for the tiny config (4 figure examples)
    "reconstructions.png": (540, 580),
    "generations.png": (1200, 420),
    "interpolation.png": (1250, 200),
    "training_curves.png": (1300, 380),
    "latent_manifold.png": (700, 700),
    "latent_scatter.png": (700, 600),
}


@pytest.mark.slow
def test_figures_exist_are_pngs_of_the_expected_size_and_not_blank(evaluated_2d_run):
    workdir, result = evaluated_2d_run
    assert sorted(p.split("/")[-1] for p in result["figures"]) == sorted(FIGURE_SIZES)
    for name, size in FIGURE_SIZES.items():
        path = workdir / "figures" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as image:
            assert image.size == size, (name, image.size)
            pixels = np.asarray(image.convert("L"), np.float64)
        assert pixels.std() > 10, name  # not one flat colour
        assert len(np.unique(pixels)) > 20, name


@pytest.mark.slow
def test_report_records_the_protocol_and_re_evaluation_repeats_it(evaluated_2d_run):
    workdir, result = evaluated_2d_run
    report = json.loads((workdir / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["num_importance_samples"] == 32
    assert evaluation["data"]["protocol"]["binarization"] == "dynamic"
    assert len(evaluation["data"]["fingerprint_sha256"]["test"]) == 64
    assert evaluation["test_nll"]["nats"] > 0
    assert "bits_per_dim" in evaluation["test_nll"]
    assert -evaluation["test_elbo"]["elbo"] >= evaluation["test_nll"]["nats"] - 1e-3
    assert evaluation["latent"]["dimensions"] == 2
    assert "test NLL" in (workdir / "report.md").read_text()
    again = evaluate_run(workdir, num_importance_samples=32, importance_chunk_size=8,
                         make_figures=False)  # fmt: skip
    assert again["test_nll"] == result["test_nll"]  # the keys are recorded: same numbers
    assert again["latent"] == result["latent"]


@pytest.mark.slow
def test_evaluation_phases_are_timed_and_add_up(evaluated_2d_run):
    """report.json's timings: the bound's compile apart from its batches, then the ELBO,
    the latent diagnostics and the figures, together within the whole evaluation."""
    _, result = evaluated_2d_run
    timings = result["timings_seconds"]
    assert list(timings) == [
        "compile_test_nll_bound", "test_nll_bound", "test_elbo", "latent_diagnostics", "figures"
    ]  # fmt: skip
    assert all(t > 0 for t in timings.values())
    assert sum(timings.values()) <= result["seconds"]
    assert result["compute_dtype"] == "float32"


@pytest.mark.slow
def test_bfloat16_evaluation_is_recorded_and_close_to_float32(evaluated_2d_run, tmp_path):
    """--compute_dtype=bfloat16: the same keys, bfloat16 products, a nearby bound."""
    workdir, result = evaluated_2d_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    low = evaluate_run(copy, num_importance_samples=32, importance_chunk_size=8,
                       make_figures=False, compute_dtype="bfloat16")  # fmt: skip
    assert low["compute_dtype"] == "bfloat16"
    report = json.loads((copy / "report.json").read_text())
    assert report["evaluation"]["compute_dtype"] == "bfloat16"
    assert "| networks' products | bfloat16 |" in (copy / "report.md").read_text()
    assert low["test_nll"]["nats"] != result["test_nll"]["nats"]
    assert abs(low["test_nll"]["nats"] - result["test_nll"]["nats"]) < 0.5
    assert "figures" not in low["timings_seconds"]


@pytest.mark.slow
def test_evaluate_command_line_errors(evaluated_2d_run, tmp_path):
    """One subprocess for what only the command line shows (flag parsing, exit code, a
    one-line ``error: ...`` and no traceback); the other message is checked in-process:
    any ``UserFacingError`` takes that same path (``vae_jax.run.cli.run``)."""
    workdir, _ = evaluated_2d_run
    result = run(
        [
            sys.executable,
            "-m",
            "experiments.evaluate",
            f"--workdir={workdir}",
            "--num_importance_samples=0",
        ]
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1] == "error: --num_importance_samples=0 must be >= 1"
    )
    assert "Traceback" not in result.stderr
    with pytest.raises(UserFacingError, match="holds no run"):
        evaluate_run(tmp_path / "none")


# --- bits per dimension: the value, not only the key ----------------------------------------


@pytest.mark.parametrize("num_dims", [784, 3072])
def test_bits_per_dim_is_the_nll_in_nats_over_dimensions_and_log_2(num_dims):
    """Catches a wrong bits/dim formula (another base, a missing division by the number of
    dimensions or by log 2): the discrete data's NLL in bits per dimension is
    ``nll_nats / (num_dims * ln 2)``, no offset (the likelihoods it applies to, Bernoulli
    and the 256-bin discretized logistic, are probabilities of the stored values). Known
    numbers: a fair coin per pixel is 1 bit/dim, a uniform 8-bit value 8 bits/dim."""
    assert bounds.bits_per_dim(num_dims * np.log(2.0), num_dims) == pytest.approx(1.0, rel=1e-12)
    assert bounds.bits_per_dim(num_dims * np.log(256.0), num_dims) == pytest.approx(8.0, rel=1e-12)
    assert bounds.bits_per_dim(0.0, num_dims) == 0.0
    nll = 87.3  # a typical binarized-MNIST NLL in nats
    assert bounds.bits_per_dim(nll, num_dims) == pytest.approx(
        nll * np.log2(np.e) / num_dims, rel=1e-12
    )


@pytest.mark.parametrize(
    ("likelihood", "has_bits"),
    [("bernoulli", True), ("discretized_logistic", True), ("gaussian", False),
     ("continuous_bernoulli", False)],
)  # fmt: skip
def test_the_test_nll_summary_gives_bits_per_dim_over_every_pixel_and_channel(likelihood, has_bits):
    """Catches bits/dim divided by the wrong number of dimensions (height * width without
    the channels) or given for densities of continuous data: the test NLL summary of
    importance-weighted bounds on (4, 4, 3) images is ``-mean / (48 ln 2)`` bits/dim for
    the discrete likelihoods, and has no bits/dim for the others."""
    from vae_jax.evaluation.evaluate_run import _nll_summary

    iwae = np.array([-40.0, -35.5, -52.25, -47.0])
    vae = types.SimpleNamespace(likelihood=likelihood)
    dataset = types.SimpleNamespace(image_shape=(4, 4, 3))
    summary = _nll_summary(iwae, vae, dataset)
    assert summary["nats"] == pytest.approx(43.6875, rel=1e-12)
    if has_bits:
        assert summary["bits_per_dim"] == pytest.approx(43.6875 / (48 * math.log(2)), rel=1e-12)
    else:
        assert "bits_per_dim" not in summary


@pytest.mark.slow
def test_the_report_gives_the_test_nll_in_bits_per_dim_of_its_nats(evaluated_2d_run):
    """Catches a wrong bits/dim in report.json and report.md (until now only the key was
    checked): the evaluated run's (Bernoulli, 28 x 28 x 1 images) bits/dim is its NLL in
    nats over 784 ln 2, and report.md shows it to 4 decimals."""
    workdir, result = evaluated_2d_run
    nll = json.loads((workdir / "report.json").read_text())["evaluation"]["test_nll"]
    assert nll == result["test_nll"]
    assert nll["bits_per_dim"] == pytest.approx(nll["nats"] / (784 * math.log(2)), rel=1e-12)
    assert (
        f"| test NLL (bits/dim) | {nll['bits_per_dim']:.4f} |"
        in (workdir / "report.md").read_text()
    )
