"""Probability distributions as immutable pytrees with pure methods.

Each distribution holds the parameters a network produced and nothing else. Its methods
are pure: ``log_prob(x)`` sums over the event dimensions (the last ``event_ndims`` axes),
``sample(key, sample_shape)`` takes its key explicitly, ``mean()`` and ``variance()`` are
exact, and ``kl(other)`` is closed form. Because they are ``flax.struct`` dataclasses,
distributions pass through ``jit``, ``vmap`` and ``grad`` like any array pytree.

Shapes: parameters have shape ``batch_shape + event_shape``; ``sample(key, s)`` returns
``s + batch_shape + event_shape``; ``log_prob`` returns the broadcast batch shape.

One family per file: ``gaussian`` (``DiagGaussian``, ``Gaussian``), ``bernoulli``,
``continuous_bernoulli``, ``discretized_logistic``, ``mixture``; ``numerics`` holds the
stable softplus and the event sums they share, ``latent`` the draws-with-density of the
latent contract.
"""

from vae_jax.core.distributions.bernoulli import Bernoulli
from vae_jax.core.distributions.continuous_bernoulli import (
    ContinuousBernoulli,
    continuous_bernoulli_log_normalizer,
    continuous_bernoulli_log_partition,
)
from vae_jax.core.distributions.discretized_logistic import DiscretizedLogistic
from vae_jax.core.distributions.gaussian import DiagGaussian, Gaussian, standard_normal
from vae_jax.core.distributions.mixture import MixtureOfDiagGaussians
from vae_jax.core.distributions.numerics import flatten_event, log_sigmoid, softplus, sum_event

__all__ = [
    "Bernoulli",
    "ContinuousBernoulli",
    "DiagGaussian",
    "DiscretizedLogistic",
    "Gaussian",
    "MixtureOfDiagGaussians",
    "continuous_bernoulli_log_normalizer",
    "continuous_bernoulli_log_partition",
    "flatten_event",
    "log_sigmoid",
    "softplus",
    "standard_normal",
    "sum_event",
]
