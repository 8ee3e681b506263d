"""The randomness study: exact determinism, the law of total variance, closed-form vs
sampled reconstruction terms (enumerated), and the two KL estimators."""

from __future__ import annotations

import itertools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vae_jax
from experiments.randomness import docs_page, reconstruction
from experiments.randomness.experiment import run_experiment, summary_lines
from vae_jax.core import distributions

# The residual Var(x) - (E[Var(x|z)] + Var(E[x|z])) has mean zero; its standard error
# comes from 20 batch means, and we require it within 4 of them.
RESIDUAL_STANDARD_ERRORS = 4.0


@pytest.fixture(scope="module")
def randomness_report(tmp_path_factory, tiny_run):
    # The session's trained tiny run, copied: the study writes into the run's folder.
    workdir = tmp_path_factory.mktemp("randomness") / "run"
    shutil.copytree(tiny_run.workdir, workdir)
    # Every measurement costs a compilation (the runs themselves take milliseconds): one
    # latent-draw count is enough, as no assertion reads the ELBO-noise rows, and the
    # summary, figure and page loop over however many there are.
    report = run_experiment(
        workdir, num_images=3, num_draws=400, num_keys=16, batch_size=8, sample_counts=(1,)
    )
    return workdir, report


@pytest.mark.slow
def test_networks_are_exactly_deterministic(randomness_report):
    _, report = randomness_report
    determinism = report["determinism"]
    assert determinism["encode_max_abs_difference"] == 0.0
    assert determinism["decode_max_abs_difference"] == 0.0
    assert determinism["decoder_samples_fraction_of_pixels_differing"] > 0.01


@pytest.mark.slow
def test_variance_decomposition_adds_up(randomness_report):
    _, report = randomness_report
    for source in ("posterior", "prior"):
        summary = report["variance_decomposition"][source]
        for image in summary["per_image"]:
            assert abs(image["residual_in_standard_errors"]) < RESIDUAL_STANDARD_ERRORS, image
            parts = (
                image["observation_noise_E_var_x_given_z"] + image["latent_draw_var_E_x_given_z"]
            )
            np.testing.assert_allclose(parts, image["total_variance"], rtol=0.05)
        np.testing.assert_allclose(
            summary["fraction_from_observation_noise"] + summary["fraction_from_latent_draw"],
            1.0,
            atol=0.05,
        )
    # For a fixed x, z spreads as q(z|x) says: sample variance / posterior variance near 1
    # (400 draws: relative standard error of a variance ~ sqrt(2/399) = 7%).
    for image in report["variance_decomposition"]["posterior"]["per_image"]:
        ratio = np.asarray(image["z_sample_variance"]) / np.asarray(image["z_posterior_variance"])
        assert np.all(np.abs(ratio - 1) < 4 * np.sqrt(2 / 399)), ratio


@pytest.mark.slow
def test_no_gradient_through_a_bernoulli_sample(randomness_report):
    _, report = randomness_report
    gradients = report["sampling_before_the_loss"]["gradients"]
    assert gradients["pathwise_through_sample_max_abs"] == 0.0
    score = gradients["score_function_sampled_score"]["mean_variance_per_parameter"]
    closed = gradients["closed_form_log_likelihood"]["mean_variance_per_parameter"]
    assert score > 10 * closed


@pytest.mark.slow
def test_report_figures_summary_and_page(randomness_report, tmp_path):
    workdir, report = randomness_report
    saved = json.loads((workdir / "randomness" / "report.json").read_text())
    assert saved["keys"]["purpose_ids"]["gradient_noise"] == 4
    for path in report["figures"]:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert any("repeated encode: max |difference| 0.0" in line for line in summary_lines(report))
    page = docs_page.write(report, workdir, tmp_path / "docs" / "randomness.md", "COMMAND")
    text = page.read_text()
    assert text.count("COMMAND") == 1
    assert "![Repeated draws](figures/randomness_draws.png)" in text
    assert (tmp_path / "docs" / "figures" / "randomness_draws.png").exists()


def _three_pixel_bernoulli():
    logits = jnp.array([1.2, -0.7, 0.1]).reshape(1, 3, 1)
    return distributions.Bernoulli(logits)


def test_closed_form_equals_the_exact_expectation_on_three_pixels():
    p = _three_pixel_bernoulli()
    x = jnp.array([1.0, 0.0, 1.0]).reshape(1, 3, 1)
    outcomes = [
        jnp.array(o, jnp.float32).reshape(1, 3, 1) for o in itertools.product([0, 1], repeat=3)
    ]
    probabilities = np.array([float(jnp.exp(p.log_prob(o))) for o in outcomes])
    assert abs(probabilities.sum() - 1) < 1e-6
    # The closed-form term is the log of the exact probability that a sample equals x:
    # independent pixels, each 1 with probability sigmoid(logit) (computed here without
    # log_prob, which the enumerated probabilities above come from).
    pixel_one = 1 / (1 + np.exp(-np.array([1.2, -0.7, 0.1], np.float64)))
    exact_match = np.prod(np.where(np.array([1, 0, 1]) == 1, pixel_one, 1 - pixel_one))
    np.testing.assert_allclose(float(p.log_prob(x)), np.log(exact_match), rtol=1e-6)
    # The sampled scores converge to their own exact expectations (enumerated) ...
    for score, expectation in (
        (reconstruction.squared_error_score, reconstruction.squared_error_expectation),
        (reconstruction.cross_entropy_score, reconstruction.cross_entropy_expectation),
    ):
        enumerated = sum(
            pr * float(score(x, o)) for pr, o in zip(probabilities, outcomes, strict=True)
        )
        np.testing.assert_allclose(float(expectation(x, p)), enumerated, rtol=1e-5)
        # ... which are not the log-likelihood: the gap the study reports.
        assert abs(enumerated - float(p.log_prob(x))) > 0.1
        samples = jax.vmap(p.sample)(jax.random.split(jax.random.key(0), 20000))
        sampled = float(jnp.mean(jax.vmap(lambda s, score=score: score(x, s))(samples)))
        values = np.array([float(score(x, o)) for o in outcomes])
        standard_error = np.sqrt(np.sum(probabilities * (values - enumerated) ** 2) / 20000)
        assert abs(sampled - enumerated) < 4 * standard_error


def test_analytic_and_monte_carlo_kl_elbos_agree_in_mean(tiny_config):
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (16, 28, 28, 1)).astype(jnp.float32)
    keys = jax.random.split(jax.random.key(2), 4000)

    @jax.jit
    def both(k):
        analytic = vae.elbo(params, k, x, kl="analytic").elbo.mean()
        monte_carlo = vae.elbo(params, k, x, kl="mc").elbo.mean()
        return analytic, monte_carlo

    analytic, monte_carlo = (np.asarray(a, np.float64) for a in jax.lax.map(both, keys))
    difference = monte_carlo - analytic  # same draws: only the KL estimate differs
    standard_error = difference.std(ddof=1) / np.sqrt(len(difference))
    assert abs(difference.mean()) < 4 * standard_error
    assert standard_error > 0  # the MC KL really is random
