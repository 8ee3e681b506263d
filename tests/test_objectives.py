"""The training objectives and the learning-rate schedule (vae_jax/objectives.py,
vae_jax/optimizers.py), built from keyword arguments as the config adapter does."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vae_jax
from vae_jax import adapter, objectives


@pytest.mark.slow
def test_iwae_objective_is_the_iwae_bound(tiny_config):
    tiny_config.objective.name = "iwae"
    tiny_config.objective.num_samples = 5
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (6, 28, 28, 1)).astype(jnp.float32)
    mask = jnp.array([True] * 5 + [False])
    loss, metrics = jax.jit(adapter.objective_from_config(vae, tiny_config))(
        params, jax.random.key(2), x, mask, jnp.int32(0)
    )
    bound = jax.jit(vae.iwae_bound, static_argnums=3)(params, jax.random.key(2), x, 5)
    np.testing.assert_allclose(-loss, bound[:5].mean(), rtol=1e-6)
    # The bound is above the ELBO (by Jensen, in expectation; here by a margin).
    assert metrics["iwae_bound"] >= metrics["elbo"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [{"name": "iwae", "num_samples": 5}, {"name": "elbo", "num_samples": 5, "kl": "analytic"},
     {"name": "elbo", "num_samples": 5, "kl": "mc"}],
    ids=["iwae", "elbo_analytic_kl", "elbo_monte_carlo_kl"],
)  # fmt: skip
def test_reported_elbo_is_log_likelihood_minus_kl(tiny_config, objective):
    """Each objective's reported numbers add up: elbo = log_likelihood - kl to float32
    rounding. (IWAE reported the Monte Carlo ELBO of its draws beside the analytic KL: off
    by the Monte Carlo KL's error, 1.6 nats here.)"""
    for field, value in objective.items():
        tiny_config.objective[field] = value
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    # A posterior far from the prior (KL 12 nats), where 5 draws estimate the KL poorly.
    head = params["encoder"]["head"]["latent_params"]
    params["encoder"]["head"]["latent_params"] = {**head, "kernel": head["kernel"] * 3.0}
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (6, 28, 28, 1)).astype(jnp.float32)
    mask = jnp.array([True] * 5 + [False])
    objective_fn = jax.jit(adapter.objective_from_config(vae, tiny_config))
    _, metrics = objective_fn(params, jax.random.key(2), x, mask, jnp.int32(0))
    elbo, log_likelihood, kl = (float(metrics[k]) for k in ("elbo", "log_likelihood", "kl"))
    # float32 rounding: a few ulps of the log-likelihood (about -550 nats, 1 ulp = 6e-5).
    np.testing.assert_allclose(elbo, log_likelihood - kl, rtol=0, atol=3e-4)


def test_kl_warmup_rises_linearly_to_beta():
    """beta * min(1, (step + 1) / warmup): beta / warmup at step 0 (not 0, as the docs said
    before), half way at step 4 of 10, full from step 9."""
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(0), beta=2.0, warmup_steps=10), 0.2)
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(9), beta=2.0, warmup_steps=10), 2.0)
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(4), beta=1.0, warmup_steps=10), 0.5)
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(50), beta=1.0, warmup_steps=10), 1.0)


def test_learning_rate_schedules(tiny_config):
    tiny_config.optimizer.schedule = "warmup_cosine"
    tiny_config.optimizer.warmup_steps = 10
    tiny_config.optimizer.final_learning_rate_ratio = 0.1
    _, schedule = adapter.optimizer_from_config(tiny_config, total_steps=110)
    np.testing.assert_allclose(schedule(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(schedule(10), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(schedule(60), 1e-3 * (0.1 + 0.9 * 0.5), rtol=1e-4)
    np.testing.assert_allclose(schedule(110), 1e-4, rtol=1e-4)


def test_kl_warmup_in_epochs_is_the_vampprior_codes_set_beta():
    """``set_beta``: ``beta = epoch / warmup``, capped at 1, with epochs from 1, constant
    over an epoch's steps; ours at every step of 250 epochs of 7 steps (fails if counted
    per step, from 0 without the +1, or uncapped)."""
    steps_per_epoch, warmup = 7, 100
    steps = jnp.arange(250 * steps_per_epoch)
    weight = objectives.kl_weight(
        steps, beta=1.0, warmup_steps=0, warmup_epochs=warmup, steps_per_epoch=steps_per_epoch
    )
    epoch = np.arange(250 * steps_per_epoch) // steps_per_epoch + 1
    np.testing.assert_allclose(weight, np.minimum(1.0, epoch / warmup), rtol=1e-6)


@pytest.mark.slow
def test_kl_warmup_in_epochs_reaches_the_objective_through_the_config(tiny_config):
    """The trainer's objective reports ``beta`` = (e + 1) / W in epoch e: the adapter
    passes the epoch's steps (540 images in batches of 50: 11 steps)."""
    tiny_config.objective.kl_warmup_epochs = 4
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    objective = adapter.objective_from_config(vae, tiny_config, None, 540)
    params = jax.jit(vae.init)(jax.random.key(0))
    x = jnp.zeros((3, 28, 28, 1))
    mask = jnp.ones((3,), bool)
    betas = [
        float(objective(params, jax.random.key(1), x, mask, jnp.int32(step))[1]["beta"])
        for step in (0, 10, 11, 32, 33, 500)
    ]
    np.testing.assert_allclose(betas, [0.25, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_kl_warmup_in_epochs_and_in_steps_together_are_refused(tiny_config):
    from vae_jax import config_checks
    from vae_jax.errors import ConfigError

    tiny_config.objective.kl_warmup_epochs = 4
    tiny_config.objective.kl_warmup_steps = 10
    with pytest.raises(ConfigError, match=r"kl_warmup_steps=10 and objective\.kl_warmup_epochs=4"):
        config_checks.check_config(tiny_config)
