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

from vae_jax import draws

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def softplus(x: jax.Array) -> jax.Array:
    """``log(1 + e^x)``, exact for any |x| (no overflow at 100 or 1000).

    Written as ``x + log1p(e^-x)`` for ``x >= 0`` and ``log1p(e^x)`` below, two selects and
    one ``exp``: on CPU faster than ``jax.nn.softplus`` (``logaddexp``), and it is the inner
    loop of every Bernoulli and logistic log-likelihood. Each branch is differentiated on
    its own side, so the gradient is ``sigmoid(x)`` everywhere, 0.5 at 0 (the form
    ``max(x, 0) + log1p(exp(-|x|))`` gives 0 there: JAX takes ``d|x|/dx = 1`` at 0).
    """
    non_negative = x >= 0
    return jnp.where(non_negative, x, 0.0) + jnp.log1p(jnp.exp(jnp.where(non_negative, -x, x)))


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
        eps = draws.normal(key, tuple(sample_shape) + self.shape, jnp.result_type(self.loc))
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


def _log_sigmoid_difference(upper: jax.Array, lower: jax.Array, width: jax.Array) -> jax.Array:
    """log(sigmoid(upper) - sigmoid(lower)) for ``upper = lower + width``, ``width > 0``,
    without cancellation: sigmoid(u) - sigmoid(l) = sigmoid(u) * sigmoid(-l) * (1 - e^-w).

    The width is passed in, not taken as ``upper - lower``: that difference of two rounded
    numbers loses float32 digits."""
    return log_sigmoid(upper) + log_sigmoid(-lower) + jnp.log(-jnp.expm1(-width))


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

    def log_prob_elementwise(self, x: jax.Array) -> jax.Array:
        """Log probability of each pixel's integer value.

        Computed in bin units: bin ``k`` spans ``[k - 1/2, k + 1/2] - loc (num_bins - 1)``,
        times the bin width in logistic units, ``w = 1 / ((num_bins - 1) scale)``. The edges
        ``k +- 1/2`` are exact and shared bit for bit with the neighbouring bins, the width
        is ``w`` itself, not a difference of rounded edges: the 256 masses sum to 1 within
        float32 rounding (intensity-unit edges summed to 1 + 3e-5 at small scales).
        """
        k = jnp.asarray(x).astype(jnp.result_type(self.loc))
        width = jnp.exp(-self.log_scale) / (self.num_bins - 1)  # of one bin, logistic units
        loc = self.loc * (self.num_bins - 1)  # in bin units
        upper = (k + 0.5 - loc) * width
        lower = (k - 0.5 - loc) * width
        is_first = k <= 0
        is_last = k >= self.num_bins - 1
        edge = is_first | is_last
        interior = _log_sigmoid_difference(
            jnp.where(edge, 1.0, upper),
            jnp.where(edge, -1.0, lower),
            jnp.where(edge, 2.0, width),
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
        noise = draws.logistic(key, tuple(sample_shape) + self.shape, jnp.result_type(self.loc))
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


@struct.dataclass
class MixtureOfDiagGaussians:
    """``p(z) = sum_c softmax(logits)_c N(z; loc_c, diag(exp(log_scale_c))^2)`` over vectors.

    A learned prior (a mixture of Gaussians, or the VampPrior's mixture of posteriors;
    see ``vae_jax.priors``). Components lie along the first axis: ``logits`` ``(C,)``,
    ``loc`` and ``log_scale`` ``(C, D)``. It has no closed-form KL to a Gaussian, so the
    ELBO estimates that KL by Monte Carlo.
    """

    logits: jax.Array
    loc: jax.Array
    log_scale: jax.Array

    @property
    def shape(self) -> tuple[int, ...]:
        return jnp.shape(self.loc)[-1:]

    def components(self) -> DiagGaussian:
        return DiagGaussian(self.loc, self.log_scale)

    def log_weights(self) -> jax.Array:
        return jax.nn.log_softmax(self.logits)

    def log_prob(self, z: jax.Array) -> jax.Array:
        """``log p(z)`` for ``z`` of shape ``(..., D)``: a log-sum-exp over components."""
        per_component = self.components().log_prob(z[..., None, :])  # (..., C)
        return jax.nn.logsumexp(per_component + self.log_weights(), axis=-1)

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """A component ``c ~ Categorical(softmax(logits))`` from ``split(key)[0]``, then
        ``loc_c + scale_c * eps`` with ``eps`` from ``split(key)[1]``."""
        component_key, normal_key = jax.random.split(key)
        sample_shape = tuple(sample_shape)
        component = jax.random.categorical(component_key, self.logits, shape=sample_shape)
        eps = draws.normal(normal_key, sample_shape + self.shape, jnp.result_type(self.loc))
        return self.loc[component] + jnp.exp(self.log_scale[component]) * eps

    def mean(self) -> jax.Array:
        return jnp.sum(jnp.exp(self.log_weights())[:, None] * self.loc, axis=0)
