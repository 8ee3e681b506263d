"""Keyed batching as fixed-shape index arrays that ``lax.scan`` can consume.

An epoch is ``(indices, mask)`` of shape ``(num_batches, batch_size)``: a permutation of
the examples from the epoch's key, padded at the end (index 0, mask False) so that every
example is visited exactly once with a fixed shape. Padded entries are masked out of every
sum and mean. Evaluation uses the same layout in data order.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Batches(NamedTuple):
    indices: jax.Array  # (num_batches, batch_size) int32
    mask: jax.Array  # (num_batches, batch_size) bool; False on padding


def num_batches(num_examples: int, batch_size: int) -> int:
    return -(-num_examples // batch_size)


def _pad_to_batches(order: jax.Array, num_examples: int, batch_size: int) -> Batches:
    total = num_batches(num_examples, batch_size) * batch_size
    padding = total - num_examples
    indices = jnp.concatenate([order.astype(jnp.int32), jnp.zeros((padding,), jnp.int32)])
    mask = jnp.arange(total) < num_examples
    shape = (total // batch_size, batch_size)
    return Batches(indices.reshape(shape), mask.reshape(shape))


def epoch_batches(key: jax.Array, num_examples: int, batch_size: int) -> Batches:
    """One training epoch: a keyed permutation of ``range(num_examples)`` in batches."""
    return _pad_to_batches(jax.random.permutation(key, num_examples), num_examples, batch_size)


def ordered_batches(num_examples: int, batch_size: int) -> Batches:
    """Every example once, in order, for evaluation."""
    return _pad_to_batches(jnp.arange(num_examples), num_examples, batch_size)
