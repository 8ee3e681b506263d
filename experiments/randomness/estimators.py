"""Gradient statistics over many keys, with constant memory (Welford's update in a scan)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnums=0)
def moments_over_keys(fn, keys, *args):
    """Mean and variance (ddof=1), across ``keys``, of every leaf of ``fn(key, *args)``.

    Arrays go in ``args`` (traced), not in ``fn``'s closure (which would embed them in
    the program as constants)."""
    first = jax.eval_shape(fn, keys[0], *args)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), first)

    def update(carry, key):
        count, mean, m2 = carry
        value = jax.tree.map(lambda v: v.astype(jnp.float32), fn(key, *args))
        count = count + 1.0
        delta = jax.tree.map(lambda v, m: v - m, value, mean)
        mean = jax.tree.map(lambda m, d: m + d / count, mean, delta)
        m2 = jax.tree.map(lambda s, v, m, d: s + d * (v - m), m2, value, mean, delta)
        return (count, mean, m2), None

    (count, mean, m2), _ = jax.lax.scan(update, (jnp.float32(0.0), zeros, zeros), keys)
    variance = jax.tree.map(lambda s: s / (count - 1.0), m2)
    return mean, variance


def gradient_noise_summary(mean, variance) -> dict:
    """Per-parameter averages: variance across keys, squared mean, and their ratio."""
    variances = np.concatenate(
        [np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(variance)]
    )
    means = np.concatenate([np.ravel(np.asarray(m, np.float64)) for m in jax.tree.leaves(mean)])
    mean_variance = float(variances.mean())
    mean_square = float(np.mean(means**2))
    return {
        "mean_variance_per_parameter": mean_variance,
        "mean_squared_gradient_per_parameter": mean_square,
        "noise_to_signal": mean_variance / mean_square if mean_square > 0 else float("inf"),
        "num_parameters": int(variances.size),
    }


def norm_of_difference(a, b) -> float:
    """||a - b|| / ||b|| over all leaves."""
    diff = sum(
        float(jnp.sum(jnp.square(x - y)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    ref = sum(float(jnp.sum(jnp.square(y))) for y in jax.tree.leaves(b))
    return float(np.sqrt(diff / ref)) if ref > 0 else float("inf")


def relative_noise_of_mean(variances: list, reference, num_keys: int) -> float:
    """The relative error a mean over ``num_keys`` keys has from noise alone:
    sqrt(sum of per-parameter variances / num_keys) / ||reference|| (variances of several
    independent estimates add)."""
    total = sum(float(jnp.sum(v)) for variance in variances for v in jax.tree.leaves(variance))
    ref = sum(float(jnp.sum(jnp.square(y))) for y in jax.tree.leaves(reference))
    return float(np.sqrt(total / num_keys / ref)) if ref > 0 else float("inf")
