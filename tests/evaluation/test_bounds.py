"""``vae_jax/evaluation/bounds.py`` against exact answers: on a linear Gaussian VAE the
bounds are exact at the exact posterior and the importance-weighted bound approaches the
exact likelihood from below; chunked, padded evaluation equals one pass; bits per
dimension."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest

from tests.helpers.linear_gaussian import (
    data,
    linear_gaussian_vae,
    posterior_params,
)
from vae_jax.evaluation import bounds, per_example


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
