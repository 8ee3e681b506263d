"""The Bernoulli over binary pixels, and the logit-parameterized base it shares with the
continuous Bernoulli."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax.core import draws
from vae_jax.core.distributions.numerics import flatten_event, log_sigmoid, softplus, sum_event


def _natural_log_prob(logits, x, event_ndims: int, log_partition) -> jax.Array:
    """``sum(x * logits - A(logits))`` over the event: the log-density of the exponential
    families with natural parameter ``logits`` (Bernoulli: A = softplus; continuous
    Bernoulli: A = its log-partition)."""
    flat_logits = flatten_event(logits, event_ndims)
    x = flatten_event(jnp.asarray(x, logits.dtype), event_ndims)
    return jnp.sum(x * flat_logits - log_partition(flat_logits), axis=-1)


@struct.dataclass
class _LogitsParameterized:
    """A distribution over pixels parameterized by one logit per pixel."""

    logits: jax.Array
    event_ndims: int = struct.field(pytree_node=False, default=3)

    @property
    def shape(self) -> tuple[int, ...]:
        return jnp.shape(self.logits)


@struct.dataclass
class Bernoulli(_LogitsParameterized):
    """Bernoulli over binary pixels, computed in logit space.

    ``log p(x) = x * logits - softplus(logits)``, exact and finite for |logits| >= 100.
    Only meaningful for binary ``x`` (for intensities in (0, 1) it is a cross-entropy,
    not a normalized likelihood: use ``ContinuousBernoulli`` there).
    """

    def log_prob(self, x: jax.Array) -> jax.Array:
        return _natural_log_prob(self.logits, x, self.event_ndims, softplus)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Binary samples (as floats); not differentiable in the logits."""
        u = draws.uniform(key, tuple(sample_shape) + self.shape, self.logits.dtype)
        return (u < jax.nn.sigmoid(self.logits)).astype(self.logits.dtype)

    def mean(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits)

    def variance(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits) * jax.nn.sigmoid(-self.logits)

    def kl(self, other: Bernoulli) -> jax.Array:
        p = jax.nn.sigmoid(self.logits)
        kl = p * (log_sigmoid(self.logits) - log_sigmoid(other.logits)) + (1.0 - p) * (
            log_sigmoid(-self.logits) - log_sigmoid(-other.logits)
        )
        return sum_event(kl, self.event_ndims)
