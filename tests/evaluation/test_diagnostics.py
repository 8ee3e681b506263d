"""``vae_jax/evaluation/diagnostics.py``: active units are the dimensions the encoder uses;
the mutual information of known codes, its ceiling log N and when it is saturated."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vae_jax
from vae_jax.evaluation import diagnostics


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
