"""Version 2's redraw rounds run on the gathered pixels at 255 (``redraw_compacted``): the
same bytes as the rule written over the whole batch (rebuilt here in numpy), with none, few,
many and more than the capacity of pixels waiting (then the rounds run over the batch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.data import preprocess


def _bytes_with_255(n: int, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 255, n).astype(np.uint8)  # 0..254: no redraw
    u[rng.random(n) < fraction] = 255
    return u


def _rule_in_numpy(key, u: np.ndarray, m: int) -> np.ndarray:
    """The README's redraw rule, one round at a time: the pixels still at 255, in order,
    take the bytes of round r (``bits(fold_in(key, r), (m / 4,), uint32)``, little-endian)."""
    u = u.copy()
    r = 0
    while (u == 255).any():
        r += 1
        words = np.asarray(jax.random.bits(jax.random.fold_in(key, r), (m // 4,), jnp.uint32))
        fresh = words.astype("<u4").view(np.uint8)
        waiting = np.flatnonzero(u == 255)[:m]
        u[waiting] = fresh[: len(waiting)]
    return u


@pytest.mark.parametrize(
    ("n", "fraction"),
    [(2048, 0.0), (2048, 1 / 256), (2048, 0.02), (2048, 0.3), (64, 1.0), (5000, 0.05)],
)
@pytest.mark.slow
def test_compacted_rounds_take_the_same_bytes_as_the_written_rule(n, fraction):
    """Within and beyond the capacity (2 m slots: m = 64 for 2,048 pixels, so 0.3 of them at
    255, about 614, and all 64 of 64, overflow and run the rounds over the whole batch)."""
    key = jax.random.key(11)
    m = 4 * max(1, -(-n // preprocess.REDRAW_PIXELS_PER_WORD))
    u = _bytes_with_255(n, fraction, seed=n)
    expected = _rule_in_numpy(key, u, m)
    capacity = preprocess.REDRAW_CAPACITY * m
    compacted = jax.jit(preprocess.redraw_compacted, static_argnums=(2, 3))
    np.testing.assert_array_equal(np.asarray(compacted(key, jnp.asarray(u), m, capacity)), expected)
    assert not (expected == 255).any()


def test_a_capacity_of_one_slot_still_gives_the_rule():
    """The fallback and the gathered path meet at the edge: one slot, 0, 1 and 2 waiting."""
    key = jax.random.key(5)
    for waiting in (0, 1, 2):
        u = np.arange(100, dtype=np.uint8) % 200
        u[[7, 50][:waiting]] = 255
        got = preprocess.redraw_compacted(key, jnp.asarray(u), 4, 1)
        np.testing.assert_array_equal(np.asarray(got), _rule_in_numpy(key, u, 4))
