"""Observation models p(x|z): which data each fits, and the decoder head that builds it.

A decoder network ends in raw features of shape ``(..., H, W, C * channels_per_pixel)``;
the head turns them into a distribution from ``vae_jax.core.distributions``. Learned scales
that do not depend on z (shared or per pixel) are ordinary parameters of the head.

The likelihood must fit the data (DESIGN.md): Bernoulli only on binary data, continuous
Bernoulli or Gaussian on intensities in [0, 1], discretized logistic on 8-bit integers.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.core import distributions

# Kinds of data representation (see vae_jax.data.preprocess).
BINARY = "binary"  # {0., 1.} floats
INTENSITY = "intensity"  # floats in [0, 1]
INTEGER = "integer"  # int32 in {0, ..., num_bins - 1}

GAUSSIAN_SCALES = ("fixed", "shared", "per_pixel", "predicted")


@dataclasses.dataclass(frozen=True)
class LikelihoodSpec:
    """Static facts about one observation model."""

    name: str
    data_kind: str  # the representation of x it is a density for
    channels_per_pixel: int  # raw decoder outputs per data channel
    description: str


LIKELIHOODS: dict[str, LikelihoodSpec] = {
    spec.name: spec
    for spec in (
        LikelihoodSpec("bernoulli", BINARY, 1, "Bernoulli on binary pixels (logits)"),
        LikelihoodSpec(
            "continuous_bernoulli", INTENSITY, 1, "continuous Bernoulli on [0, 1] intensities"
        ),
        LikelihoodSpec("gaussian", INTENSITY, 1, "Gaussian on [0, 1] intensities"),
        LikelihoodSpec(
            "discretized_logistic", INTEGER, 2, "discretized logistic on 8-bit integers"
        ),
    )
}


def get_spec(name: str) -> LikelihoodSpec:
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    return LIKELIHOODS[name]


def raw_channels(likelihood: str, gaussian_scale: str, data_channels: int) -> int:
    """How many channels the decoder network must output for this head."""
    per_pixel = get_spec(likelihood).channels_per_pixel
    if likelihood == "gaussian" and gaussian_scale == "predicted":
        per_pixel = 2
    return per_pixel * data_channels


def encoder_input(x: jax.Array, likelihood: str, num_bins: int = 256) -> jax.Array:
    """The float image the encoder sees: integer data are rescaled to [0, 1]."""
    if get_spec(likelihood).data_kind == INTEGER:
        return jnp.asarray(x, jnp.float32) / (num_bins - 1)
    return jnp.asarray(x, jnp.float32)


class ObservationHead(nn.Module):
    """Raw decoder features -> the observation distribution p(x|z).

    Attributes:
      likelihood: one of ``LIKELIHOODS``.
      image_shape: ``(H, W, C)`` of the data.
      gaussian_scale: for ``gaussian``: ``fixed`` (``observation_scale``), ``shared`` (one
        learned scalar), ``per_pixel`` (a learned scale per pixel, independent of z) or
        ``predicted`` (a network output per pixel).
      observation_scale: the fixed Gaussian scale, and the initial value of learned ones.
      min_scale: lower bound of every learned or predicted scale (keeps the density finite
        on pixels that never vary, e.g. image borders).
      num_bins: number of values for ``discretized_logistic``.
      bernoulli_clip: for ``bernoulli``: probabilities clamped to ``[c, 1 - c]`` (0 =
        off), as the VampPrior code's ``log_bernoulli`` does with ``c = 1e-5``; done on the
        logits, ``clip(l, -logit(1 - c), logit(1 - c))``, the same map.
    """

    likelihood: str
    image_shape: tuple[int, int, int]
    gaussian_scale: str = "shared"
    observation_scale: float = 0.1
    min_scale: float = 1e-3
    num_bins: int = 256
    bernoulli_clip: float = 0.0

    def _bounded_log_scale(self, raw: jax.Array) -> jax.Array:
        """log(min_scale + softplus(raw)), with raw = 0 mapping to ``observation_scale``."""
        offset = math.log(math.expm1(max(self.observation_scale - self.min_scale, 1e-6)))
        return jnp.log(self.min_scale + jax.nn.softplus(raw + offset))

    @nn.compact
    def __call__(self, features: jax.Array):
        channels = self.image_shape[-1]
        if self.likelihood == "bernoulli":
            if self.bernoulli_clip:
                bound = math.log1p(-self.bernoulli_clip) - math.log(self.bernoulli_clip)
                features = jnp.clip(features, -bound, bound)
            return distributions.Bernoulli(features)
        if self.likelihood == "continuous_bernoulli":
            return distributions.ContinuousBernoulli(features)
        if self.likelihood == "gaussian":
            return self._gaussian(features, channels)
        if self.likelihood == "discretized_logistic":
            loc, raw_scale = features[..., :channels], features[..., channels:]
            # PixelCNN++ bounds the log-scale below at -7 (in [-1, 1] units; ~-7.7 here).
            log_scale = jnp.maximum(raw_scale + math.log(self.observation_scale), -7.7)
            return distributions.DiscretizedLogistic(loc + 0.5, log_scale, self.num_bins)
        raise ValueError(f"unknown likelihood {self.likelihood!r}")

    def _gaussian(self, features: jax.Array, channels: int) -> distributions.Gaussian:
        if self.gaussian_scale == "fixed":
            log_scale = jnp.full(features.shape, math.log(self.observation_scale), features.dtype)
            return distributions.Gaussian(features, log_scale)
        if self.gaussian_scale == "shared":
            raw = self.param("raw_log_scale", nn.initializers.zeros, ())
            log_scale = jnp.broadcast_to(self._bounded_log_scale(raw), features.shape)
            return distributions.Gaussian(features, log_scale)
        if self.gaussian_scale == "per_pixel":
            raw = self.param("raw_log_scale", nn.initializers.zeros, tuple(self.image_shape))
            log_scale = jnp.broadcast_to(self._bounded_log_scale(raw), features.shape)
            return distributions.Gaussian(features, log_scale)
        if self.gaussian_scale == "predicted":
            mean, raw = features[..., :channels], features[..., channels:]
            return distributions.Gaussian(mean, self._bounded_log_scale(raw))
        raise ValueError(
            f"unknown gaussian_scale {self.gaussian_scale!r}; choose one of {GAUSSIAN_SCALES}"
        )
