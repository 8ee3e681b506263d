"""Latent-space diagnostics: active units, KL per dimension, mutual information I(x; z).

All three describe how much the latent code is used; they are computed from the
encoder's outputs on a data set (Burda et al., 2015; Hoffman & Johnson, 2016).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.core import distributions

ACTIVITY_THRESHOLD = 0.01  # Burda et al. (2015)
# An I(x; z) estimate within this many nats of its ceiling log N is called saturated.
SATURATION_GAP_NATS = 0.5


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(vae, preprocessing, params, images, indices):
    # The Gaussian the diagnostics describe (vae.posterior_described): q itself, a flow's
    # base, a hierarchy's layers along the mean path.
    q = vae.encode(params, preprocessing.eval_input(images[indices])).summary_gaussian()
    return q.loc, q.log_scale


def posterior_parameters(vae, params, images, preprocessing, batch_size: int):
    """Means and log-scales ``(N, D)`` of every example's posterior summary Gaussian
    (deterministic): q itself, the base Gaussian of a flow, a hierarchy's mean path."""
    encode = functools.partial(_encode, vae, preprocessing)
    num = int(images.shape[0])
    locs, log_scales = [], []
    for start in range(0, num, batch_size):
        indices = np.arange(start, start + batch_size) % num  # pad by wrapping; cut below
        loc, log_scale = encode(params, images, indices)
        locs.append(np.asarray(loc))
        log_scales.append(np.asarray(log_scale))
    return np.concatenate(locs)[:num], np.concatenate(log_scales)[:num]


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVITY_THRESHOLD):
    """Activity ``Var_x(E_q[z_d | x])`` per dimension, and which dimensions exceed it."""
    activity = np.var(np.asarray(posterior_means, np.float64), axis=0)
    return activity, activity > threshold


def kl_per_dimension(posterior_means: np.ndarray, posterior_log_scales: np.ndarray):
    """``E_x[KL(q(z_d | x) || N(0, 1))]`` per latent dimension, in nats."""
    q = distributions.DiagGaussian(jnp.asarray(posterior_means), jnp.asarray(posterior_log_scales))
    kl = q.kl_elementwise(distributions.standard_normal(q.loc.shape))
    return np.asarray(kl, np.float64).mean(0)


@jax.jit
def _log_aggregate_posterior(loc, log_scale, z_chunk):
    """``log (1/N) sum_n q(z_c | x_n)`` for each draw: (C, 1, D) against (1, N, D)."""
    pairwise = distributions.DiagGaussian(loc[None], log_scale[None]).log_prob(z_chunk[:, None])
    return jax.nn.logsumexp(pairwise, axis=1) - math.log(loc.shape[0])


def mutual_information(
    key: jax.Array, posterior_means: np.ndarray, posterior_log_scales: np.ndarray, chunk: int = 512
) -> float:
    """Estimate of ``I_q(x; z) = E_x[KL(q(z|x) || q(z))]`` with the aggregate posterior
    ``q(z) = (1/N) sum_n q(z|x_n)`` (Hoffman & Johnson, 2016; He et al., 2019):

        I = -E_x[H(q(z|x))] - E_{x, z ~ q(z|x)}[log q(z)],

    one draw ``z_n ~ q(z|x_n)`` per example, ``log q(z_n)`` by log-mean-exp over all N
    posteriors (computed ``chunk`` draws at a time). Biased for finite N; at most log N
    (up to the noise of the draws): see ``mutual_information_saturated``.
    """
    loc = jnp.asarray(posterior_means)
    log_scale = jnp.asarray(posterior_log_scales)
    num = loc.shape[0]
    posterior = distributions.DiagGaussian(loc, log_scale)
    z = posterior.sample(key)  # one draw per example, (N, D)

    padded = -(-num // chunk) * chunk
    z_padded = jnp.concatenate([z, jnp.zeros((padded - num, z.shape[1]), z.dtype)])
    log_q_z = np.concatenate(
        [
            np.asarray(_log_aggregate_posterior(loc, log_scale, z_padded[i : i + chunk]))
            for i in range(0, padded, chunk)
        ]
    )[:num]
    entropy = np.asarray(posterior.entropy(), np.float64)
    return float(-entropy.mean() - log_q_z.astype(np.float64).mean())


def mutual_information_saturated(estimate: float, num_examples: int) -> bool:
    """Whether an I(x; z) estimate is at its ceiling: within ``SATURATION_GAP_NATS`` (0.5)
    nats of log N, or above it.

    With ``q(z)`` the mixture of the N posteriors, ``log N - I`` is the average over n of
    ``log(1 + sum_{m != n} q(z_n|x_m) / q(z_n|x_n))``: a gap below 0.5 nats means the other
    N - 1 posteriors together add less than ``e^0.5 - 1 = 0.65`` times an example's own
    density at its draw (on the log scale average). Each code is then told apart from the
    rest of the set, and the number measures N (more test examples would raise it), not
    how much information the code carries beyond that.
    """
    return math.log(num_examples) - float(estimate) < SATURATION_GAP_NATS
