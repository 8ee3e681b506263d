"""The continuous Bernoulli on [0, 1] (Loaiza-Ganem & Cunningham, NeurIPS 2019)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax.core import draws
from vae_jax.core.distributions.bernoulli import _LogitsParameterized, _natural_log_prob
from vae_jax.core.distributions.numerics import _safe_where, softplus, sum_event

# Continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019), written as the exponential family
# p(x) = exp(x * l - A(l)) on [0, 1], with log-partition A(l) = log((e^l - 1) / l). Then
# log C(lambda) = softplus(l) - A(l) is the paper's normalizing constant, and
# mean = A'(l), variance = A''(l). A(l) = l / 2 + E(|l|) with the smooth even function
# E(a) = log(sinh(a / 2) / (a / 2)) = sum_n B_2n / (2n (2n)!) a^2n (B_2n: Bernoulli numbers;
# the terms shrink like (a / 2 pi)^2n).
#
# Near 0 the closed forms cancel: their float32 error grows like 1/a in the value and
# 1/a^2 in the gradient (at a = 0.01: 1.4e-5 in the gradient of A; at a = 0.1: 2e-6 in the
# mean and 5e-5 in its gradient). The series takes over below a = 1 for A (6 terms, the
# inner loop of the likelihood) and below a = 2 for the mean and the variance (9 terms;
# their closed forms cancel more): the first term left out is below 1e-8 of the sum, in
# every derivative used, so both branches are within a few float32 ulps, values and
# gradients. Far from 0 the closed forms are written with e^-a only: e^a and sinh
# overflow float32 past a = 88, and their gradients are then inf / inf = NaN.
_CB_LOG_PARTITION_SERIES_BELOW = 1.0  # |l| below which A uses its series
_CB_LOG_PARTITION_TERMS = 6
_CB_SERIES_BELOW = 2.0  # |l| below which the mean and the variance use theirs
_CB_SERIES = tuple(
    b / (2 * n * math.factorial(2 * n))
    for n, b in enumerate(
        (1 / 6, -1 / 30, 1 / 42, -1 / 30, 5 / 66, -691 / 2730, 7 / 6, -3617 / 510, 43867 / 798),
        start=1,
    )
)  # E(a) = sum_n _CB_SERIES[n - 1] a^2n
# E'(a) = a * sum_n 2n c_n a^(2n - 2) and E''(a) = sum_n 2n (2n - 1) c_n a^(2n - 2).
_CB_FIRST_DERIVATIVE_SERIES = tuple(2 * n * c for n, c in enumerate(_CB_SERIES, start=1))
_CB_SECOND_DERIVATIVE_SERIES = tuple(
    2 * n * (2 * n - 1) * c for n, c in enumerate(_CB_SERIES, start=1)
)


def _power_series(t: jax.Array, coefficients) -> jax.Array:
    """``sum_n coefficients[n] t^n`` by Horner's rule."""
    total = jnp.zeros_like(t)
    for c in reversed(coefficients):
        total = total * t + c
    return total


def continuous_bernoulli_log_partition(logits: jax.Array) -> jax.Array:
    """A(l) = log integral_0^1 exp(l x) dx: ``l / 2 + E(|l|)`` by the series near 0, else
    ``max(l, 0) + log(1 - e^-|l|) - log|l|`` (no cancellation of l / 2 against E at large
    negative l)."""

    def series(logit):
        coefficients = _CB_SERIES[:_CB_LOG_PARTITION_TERMS]
        return logit / 2.0 + jnp.square(logit) * _power_series(jnp.square(logit), coefficients)

    def closed_form(logit):
        a = jnp.abs(logit)
        return jnp.where(logit > 0, logit, 0.0) + jnp.log(-jnp.expm1(-a)) - jnp.log(a)

    below = _CB_LOG_PARTITION_SERIES_BELOW
    return _safe_where(jnp.abs(logits) < below, series, closed_form, logits, 0.0, below)


def continuous_bernoulli_log_normalizer(logits: jax.Array) -> jax.Array:
    """The paper's log C(lambda) with lambda = sigmoid(l); equals log 2 at l = 0."""
    return softplus(logits) - continuous_bernoulli_log_partition(logits)


def _cb_mean_of_negative(a: jax.Array) -> jax.Array:
    """Mean at logit -a (a >= 0): 1/2 - E'(a) = 1/a - 1/expm1(a), with
    1/expm1(a) = e^-a / (1 - e^-a)."""
    return _safe_where(
        a < _CB_SERIES_BELOW,
        lambda s: 0.5 - s * _power_series(jnp.square(s), _CB_FIRST_DERIVATIVE_SERIES),
        lambda s: 1.0 / s - jnp.exp(-s) / -jnp.expm1(-s),
        a,
        0.0,
        _CB_SERIES_BELOW,
    )


def _cb_variance(a: jax.Array) -> jax.Array:
    """Variance at logit +-a (even): E''(a) = 1/a^2 - 1/(4 sinh^2(a/2)), with
    1/(4 sinh^2(a/2)) = e^-a / (1 - e^-a)^2."""
    return _safe_where(
        a < _CB_SERIES_BELOW,
        lambda s: _power_series(jnp.square(s), _CB_SECOND_DERIVATIVE_SERIES),
        lambda s: 1.0 / jnp.square(s) - jnp.exp(-s) / jnp.square(jnp.expm1(-s)),
        a,
        0.0,
        _CB_SERIES_BELOW,
    )


@struct.dataclass
class ContinuousBernoulli(_LogitsParameterized):
    """Continuous Bernoulli on [0, 1] (Loaiza-Ganem & Cunningham, NeurIPS 2019).

    The properly normalized counterpart of the Bernoulli cross-entropy on intensities:
    ``log p(x) = x * logits - softplus(logits) + log C(sigmoid(logits))``, with the exact
    normalizing constant, stable at and near ``logits = 0``.
    """

    def log_prob(self, x: jax.Array) -> jax.Array:
        return _natural_log_prob(
            self.logits, x, self.event_ndims, continuous_bernoulli_log_partition
        )

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Inverse-CDF samples in [0, 1]."""
        u = draws.uniform(key, tuple(sample_shape) + self.shape, self.logits.dtype)
        a = jnp.abs(self.logits)
        # Inverse CDF at logit -a: x = log1p(u * expm1(-a)) / (-a) (~ u - a u (1-u) / 2).
        x_negative = _safe_where(
            a < 1e-3,
            lambda s: u - s * u * (1.0 - u) / 2.0,
            lambda s: jnp.log1p(u * jnp.expm1(-s)) / (-s),
            a,
            0.0,
            1.0,
        )
        # At logit +a, x is distributed as 1 - x at logit -a.
        return jnp.clip(jnp.where(self.logits < 0, x_negative, 1.0 - x_negative), 0.0, 1.0)

    def mean(self) -> jax.Array:
        m = _cb_mean_of_negative(jnp.abs(self.logits))
        return jnp.where(self.logits < 0, m, 1.0 - m)

    def variance(self) -> jax.Array:
        return _cb_variance(jnp.abs(self.logits))

    def kl(self, other: ContinuousBernoulli) -> jax.Array:
        kl = (
            self.mean() * (self.logits - other.logits)
            - continuous_bernoulli_log_partition(self.logits)
            + continuous_bernoulli_log_partition(other.logits)
        )
        return sum_event(kl, self.event_ndims)
