"""Numerically careful pieces shared by the distributions: softplus, log-sigmoid, sums
over event axes, and a NaN-free two-branch ``where``."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
