"""JAX's random draws, computed on the flattened shape and reshaped.

Each function returns the bits of the ``jax.random`` function it names, called with the
same key and shape: JAX derives an element's bits from its position in row-major order,
not from the shape (``tests/core/test_draws.py`` checks it for every function here). The
reason is compile time. XLA on CPU compiles a draw of rank 3 or 4 several times slower
than the same draw of rank 1 (jax 0.10.2: 0.56 s and 1.8 s against 0.16 s for
``jax.random.bits``), and a step draws images (rank 4) and importance samples (rank 3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def _flat(shape: Sequence[int]) -> tuple[int]:
    return (math.prod(shape),)


def normal(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """``jax.random.normal(key, shape, dtype)``."""
    return jax.random.normal(key, _flat(shape), dtype).reshape(shape)


def uniform(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype)`` on [0, 1)."""
    return jax.random.uniform(key, _flat(shape), dtype).reshape(shape)


def logistic(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """``jax.random.logistic(key, shape, dtype)``."""
    return jax.random.logistic(key, _flat(shape), dtype).reshape(shape)


def bernoulli(key: jax.Array, probabilities: jax.Array) -> jax.Array:
    """``jax.random.bernoulli(key, probabilities)``: booleans of the probabilities' shape."""
    probabilities = jnp.asarray(probabilities)
    return jax.random.bernoulli(key, probabilities.reshape(-1)).reshape(probabilities.shape)
