"""Probability distributions as immutable pytrees with pure methods.

Each distribution holds the parameters a network produced and nothing else. Its methods
are pure: ``log_prob(x)`` sums over the event dimensions (the last ``event_ndims`` axes),
``sample(key, sample_shape)`` takes its key explicitly, ``mean()`` and ``variance()`` are
exact, and ``kl(other)`` is closed form. Because they are ``flax.struct`` dataclasses,
distributions pass through ``jit``, ``vmap`` and ``grad`` like any array pytree.

Shapes: parameters have shape ``batch_shape + event_shape``; ``sample(key, s)`` returns
``s + batch_shape + event_shape``; ``log_prob`` returns the broadcast batch shape.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def softplus(x: jax.Array) -> jax.Array:
    """``log(1 + e^x)``, exact for any |x| (no overflow at 100 or 1000).

    Written as ``log1p(exp(-|x|)) + max(x, 0)``: on CPU about 4x faster than
    ``jax.nn.softplus`` (``logaddexp``), and it is the inner loop of every Bernoulli and
    logistic log-likelihood. Its gradient is ``sigmoid(x)``, also at 0.
    """
    return jnp.log1p(jnp.exp(-jnp.abs(x))) + jnp.maximum(x, 0.0)


def log_sigmoid(x: jax.Array) -> jax.Array:
    """``log(sigmoid(x)) = -softplus(-x)``."""
    return -softplus(-x)


def sum_event(values: jax.Array, event_ndims: int) -> jax.Array:
    """Sums ``values`` over its last ``event_ndims`` axes."""
    if event_ndims == 0:
        return values
    return jnp.sum(flatten_event(values, event_ndims), axis=-1)


def flatten_event(values: jax.Array, event_ndims: int) -> jax.Array:
    """Merges the last ``event_ndims`` axes into one (adds one if there are none).

    Log-likelihoods are computed on flat events: XLA:CPU runs an elementwise op between
    ``(..., H, W, 1)`` logits and a broadcast ``(H, W, 1)`` image up to 40x slower than on
    ``(..., H*W)`` arrays, and that op is the inner loop of training and evaluation.
    """
    values = jnp.asarray(values)
    if event_ndims == 0:
        return values[..., None]
    return values.reshape((*values.shape[: values.ndim - event_ndims], -1))


def _safe_where(condition, small_value_fn, large_value_fn, x, safe_small, safe_large):
    """``where(condition, f(x), g(x))`` with both branches evaluated at safe inputs so that
    neither the value nor the gradient of the unused branch can be NaN."""
    return jnp.where(
        condition,
        small_value_fn(jnp.where(condition, x, safe_small)),
        large_value_fn(jnp.where(condition, safe_large, x)),
    )


@struct.dataclass
class DiagGaussian:
    """Gaussian with diagonal covariance, parameterized by ``loc`` and ``log_scale``.

    The latent posterior ``q(z|x)`` and prior ``p(z)`` (``event_ndims=1``), and with
    ``event_ndims=3`` a Gaussian observation model over images (see ``Gaussian``).
    """

    loc: jax.Array
    log_scale: jax.Array
    event_ndims: int = struct.field(pytree_node=False, default=1)

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
        eps = jax.random.normal(key, tuple(sample_shape) + self.shape, jnp.result_type(self.loc))
        return self.loc + self.scale * eps

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
        u = jax.random.uniform(key, tuple(sample_shape) + self.shape, self.logits.dtype)
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


# Continuous Bernoulli (Loaiza-Ganem & Cunningham, 2019), written as the exponential family
# p(x) = exp(x * l - A(l)) on [0, 1], with log-partition A(l) = log((e^l - 1) / l). Then
# log C(lambda) = softplus(l) - A(l) is the paper's normalizing constant, and
# mean = A'(l), variance = A''(l). A(l) = l / 2 + E(|l|) with the smooth even function
# E(a) = log(sinh(a / 2) / (a / 2)); near 0 the closed forms cancel and a Taylor series
# takes over.
_CB_TAYLOR_BELOW = 1e-2  # |l| below which the log-partition uses its series
_CB_MOMENT_TAYLOR_BELOW = 0.1  # and the mean uses its series


def _cb_even_log_partition(a: jax.Array) -> jax.Array:
    """E(a) = log(sinh(a/2) / (a/2)) for a >= 0."""
    return _safe_where(
        a < _CB_TAYLOR_BELOW,
        lambda s: s**2 / 24.0 - s**4 / 2880.0,
        lambda s: s / 2.0 + jnp.log(-jnp.expm1(-s)) - jnp.log(s),
        a,
        0.0,
        1.0,
    )


def continuous_bernoulli_log_partition(logits: jax.Array) -> jax.Array:
    """A(l) = log integral_0^1 exp(l x) dx = l / 2 + E(|l|)."""
    return logits / 2.0 + _cb_even_log_partition(jnp.abs(logits))


def continuous_bernoulli_log_normalizer(logits: jax.Array) -> jax.Array:
    """The paper's log C(lambda) with lambda = sigmoid(l); equals log 2 at l = 0."""
    return softplus(logits) - continuous_bernoulli_log_partition(logits)


def _cb_mean_of_negative(a: jax.Array) -> jax.Array:
    """Mean at logit -a (a >= 0): 1/a - 1/expm1(a)."""
    return _safe_where(
        a < _CB_MOMENT_TAYLOR_BELOW,
        lambda s: 0.5 - s / 12.0 + s**3 / 720.0 - s**5 / 30240.0,
        lambda s: 1.0 / s - 1.0 / jnp.expm1(s),
        a,
        0.0,
        1.0,
    )


def _cb_variance(a: jax.Array) -> jax.Array:
    """Variance at logit +-a (even): 1/a^2 - 1/(4 sinh^2(a/2))."""
    return _safe_where(
        a < 1.0,
        lambda s: 1.0 / 12.0 - s**2 / 240.0 + s**4 / 6048.0 - s**6 / 172800.0,
        lambda s: 1.0 / jnp.square(s) - 0.25 / jnp.square(jnp.sinh(s / 2.0)),
        a,
        0.0,
        1.0,
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
        u = jax.random.uniform(key, tuple(sample_shape) + self.shape, self.logits.dtype)
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


def _log_sigmoid_difference(upper: jax.Array, lower: jax.Array) -> jax.Array:
    """log(sigmoid(upper) - sigmoid(lower)) for upper > lower, without cancellation:
    sigmoid(u) - sigmoid(l) = sigmoid(u) * sigmoid(-l) * (1 - exp(l - u))."""
    return log_sigmoid(upper) + log_sigmoid(-lower) + jnp.log(-jnp.expm1(lower - upper))


@struct.dataclass
class DiscretizedLogistic:
    """Logistic distribution discretized to ``num_bins`` integer values (8-bit pixels).

    Data are integers ``k`` in ``{0, ..., num_bins - 1}``; bin ``k`` is centred at intensity
    ``k / (num_bins - 1)`` with half-width ``1 / (2 (num_bins - 1))``. ``loc`` and
    ``log_scale`` are in intensity units. The first and last bins integrate the tails
    (``(-inf, ...]`` and ``[..., +inf)``), so the bin probabilities sum to one
    (Salimans et al., PixelCNN++, 2017).
    """

    loc: jax.Array
    log_scale: jax.Array
    num_bins: int = struct.field(pytree_node=False, default=256)
    event_ndims: int = struct.field(pytree_node=False, default=3)

    @property
    def shape(self) -> tuple[int, ...]:
        return jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.log_scale))

    @property
    def _half_bin(self) -> float:
        return 0.5 / (self.num_bins - 1)

    def log_prob_elementwise(self, x: jax.Array) -> jax.Array:
        """Log probability of each pixel's integer value."""
        k = jnp.asarray(x).astype(jnp.result_type(self.loc))
        centre = k / (self.num_bins - 1)
        inv_scale = jnp.exp(-self.log_scale)
        upper = (centre + self._half_bin - self.loc) * inv_scale
        lower = (centre - self._half_bin - self.loc) * inv_scale
        is_first = k <= 0
        is_last = k >= self.num_bins - 1
        interior = _log_sigmoid_difference(
            jnp.where(is_first | is_last, 1.0, upper), jnp.where(is_first | is_last, -1.0, lower)
        )
        return jnp.where(
            is_first,
            log_sigmoid(upper),
            jnp.where(is_last, log_sigmoid(-lower), interior),
        )

    def log_prob(self, x: jax.Array) -> jax.Array:
        flat = DiscretizedLogistic(
            flatten_event(jnp.broadcast_to(self.loc, self.shape), self.event_ndims),
            flatten_event(jnp.broadcast_to(self.log_scale, self.shape), self.event_ndims),
            self.num_bins,
            1,
        )
        return jnp.sum(flat.log_prob_elementwise(flatten_event(x, self.event_ndims)), axis=-1)

    def bin_log_probs(self) -> jax.Array:
        """Log probabilities of every bin, shape ``shape + (num_bins,)``."""
        bins = jnp.arange(self.num_bins)
        return jax.vmap(
            lambda k: DiscretizedLogistic(
                self.loc, self.log_scale, self.num_bins, 0
            ).log_prob_elementwise(k),
            out_axes=-1,
        )(bins)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Integer samples: a logistic draw rounded to its bin, tails clipped to the edges."""
        noise = jax.random.logistic(
            key, tuple(sample_shape) + self.shape, jnp.result_type(self.loc)
        )
        continuous = self.loc + jnp.exp(self.log_scale) * noise
        k = jnp.round(continuous * (self.num_bins - 1))
        return jnp.clip(k, 0, self.num_bins - 1).astype(jnp.int32)

    def mean(self) -> jax.Array:
        """Exact mean in integer units, by summing over the bins."""
        probs = jnp.exp(self.bin_log_probs())
        return jnp.sum(probs * jnp.arange(self.num_bins, dtype=probs.dtype), axis=-1)

    def variance(self) -> jax.Array:
        """Exact variance in integer units, by summing over the bins."""
        probs = jnp.exp(self.bin_log_probs())
        bins = jnp.arange(self.num_bins, dtype=probs.dtype)
        mean = jnp.sum(probs * bins, axis=-1, keepdims=True)
        return jnp.sum(probs * jnp.square(bins - mean), axis=-1)


def standard_normal(shape: tuple[int, ...], dtype=jnp.float32) -> DiagGaussian:
    """The prior ``p(z) = N(0, I)`` over vectors of the last dimension of ``shape``."""
    zeros = jnp.zeros(shape, dtype)
    return DiagGaussian(zeros, zeros, event_ndims=1)
