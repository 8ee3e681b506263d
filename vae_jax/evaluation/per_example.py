"""Evaluate a per-example function over a whole split: every example exactly once.

Each example ``i`` gets its own key ``fold_in(key, i)``, so its result does not depend on
the batch size, the padding of the last batch or how the work is chunked. Batches are
gathered by index from the device-resident split inside one compiled function; the last
batch is padded and the padding dropped from the results.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from vae_jax.core import rng
from vae_jax.data import batching
from vae_jax.data.preprocess import Preprocessing


def make_batch_evaluator(
    per_example_fn: Callable, preprocessing: Preprocessing, batch_sharding=None
):
    """Compiles ``(params, key, images, indices) -> outputs`` for one batch of indices.

    ``per_example_fn(params, key, x)`` takes one example ``x`` (H, W, C) as the model reads
    it and returns a pytree of arrays.
    """

    @jax.jit
    def evaluate_batch(params, key, images, indices):
        stored = images[indices]
        if batch_sharding is not None:
            stored = jax.lax.with_sharding_constraint(stored, batch_sharding)
        x = preprocessing.eval_input(stored)
        keys = rng.example_keys(key, indices)
        return jax.vmap(per_example_fn, in_axes=(None, 0, 0))(params, keys, x)

    return evaluate_batch


def evaluate_examples(
    evaluate_batch,
    params,
    key: jax.Array,
    images: jax.Array,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
):
    """Runs ``evaluate_batch`` over every example of ``images``; returns numpy arrays with
    a leading axis of length ``len(images)``. ``on_batch(n_done)`` reports progress."""
    num_examples = int(images.shape[0])
    batches = batching.ordered_batches(num_examples, batch_size)
    outputs = []
    done = 0
    for indices, mask in zip(np.asarray(batches.indices), np.asarray(batches.mask), strict=True):
        result = evaluate_batch(params, key, images, indices)
        valid = int(mask.sum())
        outputs.append(jax.tree.map(lambda a, n=valid: np.asarray(a)[:n], result))
        done += valid
        if on_batch is not None:
            on_batch(done)
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
