"""Diagonal Gaussians: the latent posterior and prior ``N(loc, diag(scale^2))``, and the
Gaussian observation model over images."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax.core import draws
from vae_jax.core.distributions.latent import DrawsThenDensity
from vae_jax.core.distributions.numerics import flatten_event, sum_event

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


@struct.dataclass
class DiagGaussian(DrawsThenDensity):
    """Gaussian with diagonal covariance, parameterized by ``loc`` and ``log_scale``.

    The latent posterior ``q(z|x)`` and prior ``p(z)`` (``event_ndims=1``), and with
    ``event_ndims=3`` a Gaussian observation model over images (see ``Gaussian``).
    """

    loc: jax.Array
    log_scale: jax.Array
    event_ndims: int = struct.field(pytree_node=False, default=1)

    # The latent contract (vae_jax.model.contract): over vectors (event_ndims=1) the
    # density is known at any z and factorizes over dimensions, one block each.
    density_everywhere = True

    @property
    def scale(self) -> jax.Array:
        return jnp.exp(self.log_scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.log_scale))

    def log_prob_elementwise(self, x: jax.Array) -> jax.Array:
        """Log density of each coordinate (not summed over the event)."""
        standardized = (x - self.loc) * jnp.exp(-self.log_scale)
        return -0.5 * jnp.square(standardized) - self.log_scale - _HALF_LOG_TWO_PI

    def log_prob(self, x: jax.Array) -> jax.Array:
        flat = DiagGaussian(
            flatten_event(jnp.broadcast_to(self.loc, self.shape), self.event_ndims),
            flatten_event(jnp.broadcast_to(self.log_scale, self.shape), self.event_ndims),
        )
        return jnp.sum(flat.log_prob_elementwise(flatten_event(x, self.event_ndims)), axis=-1)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """``loc + scale * eps`` with ``eps ~ N(0, I)``: differentiable in the parameters."""
        eps = draws.normal(key, tuple(sample_shape) + self.shape, jnp.result_type(self.loc))
        return self.loc + self.scale * eps

    @property
    def blocks(self) -> tuple[int, ...]:
        """Over vectors: one block per dimension (the density factorizes)."""
        return (1,) * self.shape[-1]

    def block_log_probs(self, z: jax.Array) -> jax.Array:
        """Over vectors: the log density of each coordinate, ``(..., D)``."""
        return self.log_prob_elementwise(z)

    def summary_gaussian(self) -> DiagGaussian:
        """The Gaussian that latent diagnostics describe: itself."""
        return self

    def central_point(self) -> jax.Array:
        """A central point of the distribution: its mean."""
        return self.mean()

    def mean(self) -> jax.Array:
        return jnp.broadcast_to(self.loc, self.shape)

    def variance(self) -> jax.Array:
        return jnp.broadcast_to(jnp.exp(2.0 * self.log_scale), self.shape)

    def entropy(self) -> jax.Array:
        return sum_event(
            jnp.broadcast_to(self.log_scale + 0.5 + _HALF_LOG_TWO_PI, self.shape),
            self.event_ndims,
        )

    def kl_elementwise(self, other: DiagGaussian) -> jax.Array:
        """``KL(self || other)`` per coordinate, in closed form."""
        log_ratio = other.log_scale - self.log_scale
        return (
            log_ratio
            + 0.5 * (jnp.exp(-2.0 * log_ratio) + jnp.square((self.loc - other.loc) / other.scale))
            - 0.5
        )

    def kl(self, other: DiagGaussian) -> jax.Array:
        """``KL(self || other)`` summed over the event, in closed form."""
        return sum_event(self.kl_elementwise(other), self.event_ndims)


@struct.dataclass
class Gaussian(DiagGaussian):
    """Gaussian observation model ``p(x|z)`` over images (event = height, width, channels).

    The scale is whatever the decoder head provides: a fixed constant, one learned scalar
    shared by all pixels, a learned scale per pixel, or a network output
    (``model.gaussian_scale`` in the config).
    """

    event_ndims: int = struct.field(pytree_node=False, default=3)


def standard_normal(shape: tuple[int, ...], dtype=jnp.float32) -> DiagGaussian:
    """The prior ``p(z) = N(0, I)`` over vectors of the last dimension of ``shape``."""
    zeros = jnp.zeros(shape, dtype)
    return DiagGaussian(zeros, zeros, event_ndims=1)
