"""``vae_jax/data/batching.py``: a keyed epoch order that visits every example once, and
padded evaluation batches that count every example once."""

from __future__ import annotations

import jax
import numpy as np

from vae_jax.data import batching


def test_epoch_order_is_keyed_and_visits_every_example_once():
    n, batch = 103, 16
    order = lambda key: batching.epoch_batches(key, n, batch)
    a, b, c = order(jax.random.key(0)), order(jax.random.key(0)), order(jax.random.key(1))
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert a.indices.shape == (7, 16)
    for epoch in (a, c):
        visited = np.asarray(epoch.indices)[np.asarray(epoch.mask)]
        np.testing.assert_array_equal(np.sort(visited), np.arange(n))


def test_padded_evaluation_batches_count_every_example_once():
    n, batch = 103, 25
    values = np.arange(n, dtype=np.float64) ** 2
    batches = batching.ordered_batches(n, batch)
    assert batches.indices.shape == (5, 25)
    assert int(batches.mask.sum()) == n
    total = sum(
        np.sum(np.where(np.asarray(m), values[np.asarray(i)], 0.0))
        for i, m in zip(batches.indices, batches.mask, strict=True)
    )
    assert total == values.sum()
    np.testing.assert_array_equal(
        np.asarray(batches.indices)[np.asarray(batches.mask)], np.arange(n)
    )
