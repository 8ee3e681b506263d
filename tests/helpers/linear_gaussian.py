"""A linear Gaussian VAE whose exact posterior and likelihood are known in closed form.

Decoder ``x = W z + b + N(0, s^2 I)`` with orthogonal columns of ``W``, a linear encoder
and the prior ``N(0, I)``: the encoder can be set to the exact posterior, so bounds and
gradient estimators can be checked against exact values.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import vae_jax
from experiments.configs import tiny

OBSERVATION_SCALE = 0.5
W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, -1.0]])  # orthogonal columns
B = np.array([0.3, -0.2, 0.1, 0.5])


@functools.cache
def linear_gaussian_vae():
    """Decoder x = W z + b + N(0, s^2 I); linear encoder; prior N(0, I); x in R^4."""
    config = tiny.get_config()
    config.model.hidden_sizes = ()
    config.model.latent_dim = 2
    config.model.likelihood = "gaussian"
    config.model.gaussian_scale = "fixed"
    config.model.observation_scale = OBSERVATION_SCALE
    return vae_jax.vae_from_config(config, image_shape=(2, 2, 1))


def posterior_params(vae, *, exact_posterior: bool):
    """Decoder (W, b); encoder = the exact posterior, or a deliberately worse one."""
    s2 = OBSERVATION_SCALE**2
    posterior_cov = np.linalg.inv(np.eye(2) + W.T @ W / s2)  # diagonal: W^T W is diagonal
    gain = posterior_cov @ W.T / s2  # E[z|x] = gain (x - b)
    log_scale = 0.5 * np.log(np.diag(posterior_cov))
    if not exact_posterior:  # wrong mean, too wide: a valid but loose proposal
        gain = gain * 0.8
        log_scale = log_scale + 0.4
    params = jitted_init(vae)(jax.random.key(0))  # every leaf is replaced below
    kernel = np.zeros((4, 4))
    kernel[:, :2] = gain.T
    bias = np.concatenate([-gain @ B, log_scale])
    params["encoder"]["head"]["latent_params"] = {
        "kernel": jnp.asarray(kernel, jnp.float32),
        "bias": jnp.asarray(bias, jnp.float32),
    }
    params["decoder"]["pixels"] = {
        "kernel": jnp.asarray(W.T, jnp.float32),
        "bias": jnp.asarray(B, jnp.float32),
    }
    return params


@functools.cache
def jitted_init(vae):
    return jax.jit(vae.init)


def data(num=300, seed=0):
    cov = W @ W.T + OBSERVATION_SCALE**2 * np.eye(4)
    x = np.random.default_rng(seed).multivariate_normal(B, cov, size=num)
    exact = stats.multivariate_normal(B, cov).logpdf(x)
    return jnp.asarray(x.reshape(num, 2, 2, 1), jnp.float32), exact
