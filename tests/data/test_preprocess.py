"""``vae_jax/data/preprocess.py``: static binarization (a threshold or one keyed draw),
dynamic binarization as a function of key and step (version 1: ``jax.random.bernoulli``;
version 2: 8 random bits per pixel, exactly ``Bernoulli(x / 255)``), and the protocol each
records."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.data import preprocess


def test_static_threshold_binarizes_every_split_and_is_recorded():
    """static + threshold: train, validation and test are x / 255 > 0.5 (no key), and the
    protocol says so; static + sample records the keyed draw."""
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    threshold = preprocess.Preprocessing(
        kind="binary", binarization="static", static_method="threshold"
    )
    expected = (images > 127).astype(np.uint8)
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(threshold.store_for_evaluation(images, split), expected)
    np.testing.assert_array_equal(threshold.store_for_training(images), expected)
    assert threshold.describe() == {
        "binarization": "static",
        "representation": "binary {0, 1}",
        "train": "threshold: x / 255 > 0.5",
        "evaluation": "threshold: x / 255 > 0.5",
        "static_method": "threshold",
        "binarization_seed": 0,
    }
    sample = preprocess.Preprocessing(kind="binary", binarization="static", binarization_seed=3)
    described = sample.describe()
    assert described["train"] == described["evaluation"]
    keyed_draw = (
        "one Bernoulli(x / 255) draw per pixel, key fold_in(fold_in(key(3), 1000), split_id)"
    )
    assert described["train"].startswith(keyed_draw)


def test_dynamic_and_plain_protocols_are_recorded_as_documented():
    """What every result records about the data, written out: the README's rules."""
    dynamic = preprocess.Preprocessing(kind="binary", binarization="dynamic", binarization_seed=2)
    assert dynamic.describe() == {
        "binarization": "dynamic",
        "representation": "binary {0, 1}",
        "train": "fresh Bernoulli(x / 255) draw per example per step, key "
        "fold_in(binarize_stream, step)",
        "evaluation": "one Bernoulli(x / 255) draw per pixel, key "
        "fold_in(fold_in(key(2), 1000), split_id), "
        "split_id={'train': 0, 'test': 1, 'validation': 2}",
        "binarization_seed": 2,
    }
    intensities = preprocess.Preprocessing(kind="intensity").describe()
    assert intensities["binarization"] == "none"
    assert intensities["representation"] == "intensities x / 255 in [0, 1]"
    integers = preprocess.Preprocessing(kind="integer").describe()
    assert integers == {"binarization": "none", "representation": "8-bit integers in {0, ..., 255}"}
    stored_binary = preprocess.Preprocessing(kind="binary", already_binary=True).describe()
    assert stored_binary["binarization"] == "none (the dataset is stored binarized)"


def test_dynamic_binarization_is_a_function_of_key_and_step():
    stream = jax.random.key(11)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)), jnp.uint8)
    draw = jax.jit(
        lambda step: preprocess.dynamic_binarize(jax.random.fold_in(stream, step), images)
    )
    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
    # The pixel mean of many draws matches the intensities (within 4 standard errors).
    draws = np.mean([np.asarray(draw(s)) for s in range(400)], axis=0)
    p = np.asarray(images, np.float64) / 255
    se = np.sqrt(p * (1 - p) / 400) + 1e-9
    assert np.mean(np.abs(draws - p) < 4 * se) > 0.999
    np.testing.assert_allclose(draws.mean(), p.mean(), atol=2e-3)


# --- dynamic binarization, version 2: 8 random bits per pixel, exact probabilities ----

binarize_v2 = jax.jit(preprocess.dynamic_binarize_bytes)


def binarized_at_every_intensity(key, num_pixels: int) -> np.ndarray:
    """Row k: ``num_pixels`` pixels all at intensity k, binarized with ``key`` (k = 0..255).
    With one key and shape the bytes do not depend on the intensities, so column i shows
    where pixel i turns from 0 to 1."""
    intensities = jnp.arange(256, dtype=jnp.uint8)
    every = jax.jit(jax.vmap(lambda k: binarize_v2(key, jnp.full((num_pixels,), k, jnp.uint8))))
    return np.asarray(every(intensities))


def accepted_bytes(outputs: np.ndarray) -> np.ndarray:
    """Pixel i's accepted byte u_i, read off ``binarized_at_every_intensity``: the number of
    intensities that give it 0, minus 1 (pixel i is 1 iff u_i < k)."""
    return (outputs == 0).sum(axis=0) - 1


@pytest.mark.slow
def test_version_2_gives_1_for_exactly_k_of_the_255_accepted_bytes():
    """Exhaustive: a pixel of intensity k is 1 iff its accepted byte u (in 0..254) is below k,
    so for every k = 0, ..., 255 exactly k of the 255 byte values give 1: P = k / 255."""
    outputs = binarized_at_every_intensity(jax.random.key(5), 1 << 16)
    assert set(np.unique(outputs)) == {0.0, 1.0}
    assert np.all(np.diff(outputs, axis=0) >= 0), "a pixel is not a step in k"
    assert not outputs[0].any(), "intensity 0 gave a 1"
    assert outputs[255].all(), "intensity 255 gave a 0"
    u = accepted_bytes(outputs)
    np.testing.assert_array_equal(np.unique(u), np.arange(255))  # every accepted value seen
    for k in range(256):
        ones, zeros = set(u[outputs[k] == 1]), set(u[outputs[k] == 0])
        assert ones == set(range(k)), k
        assert zeros == set(range(k, 255)), k
        assert len(ones) == k  # k of the 255 accepted values, for every k


@pytest.mark.slow
def test_version_2_accepted_bytes_are_uniform_on_0_to_254():
    """Chi-square of the accepted bytes of 16 keys against the uniform law on 0..254 (255
    is rejected and redrawn): a byte left at 255, or a redraw that favoured some values,
    would show. p-values of fixed keys: the test is deterministic."""
    from scipy import stats

    u = np.concatenate(
        [
            accepted_bytes(binarized_at_every_intensity(jax.random.key(100 + i), 1 << 14))
            for i in range(16)
        ]
    )
    counts = np.bincount(u, minlength=256)
    assert counts[255] == 0
    assert stats.chisquare(counts[:255]).pvalue > 1e-3


@pytest.mark.parametrize("k", [1, 77, 128, 200, 254])
def test_version_2_draws_k_over_255_not_k_over_256(k):
    """Binomial test of 2**20 pixels at intensity k (one key each): consistent with k / 255,
    and at k = 254 it rejects k / 256, the law of comparing k with a byte that 255 is not
    redrawn from (the test can tell the two apart)."""
    from scipy import stats

    n = 1 << 20
    x = binarize_v2(jax.random.key(1000 + k), jnp.full((n,), k, jnp.uint8))
    ones = int(np.asarray(x).sum())
    assert stats.binomtest(ones, n, k / 255).pvalue > 1e-3
    if k == 254:
        assert stats.binomtest(ones, n, k / 256).pvalue < 1e-9


def test_version_2_is_a_function_of_key_and_step():
    stream = jax.random.key(11)
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1)), jnp.uint8)
    draw = jax.jit(lambda step: binarize_v2(jax.random.fold_in(stream, step), images))
    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
    first = draw(5)
    assert first.shape == images.shape
    assert first.dtype == jnp.float32
    version_1 = preprocess.dynamic_binarize(jax.random.fold_in(stream, 5), images)
    assert not np.array_equal(first, version_1)  # another protocol, other bits


@pytest.mark.slow
def test_version_2_reuses_no_key():
    """A run with runtime.debug_key_reuse trains under jax.debug_key_reuse: version 2 draws
    once from the step's key and once from each fold_in(key, r) of its redraws."""
    stored = jnp.asarray(np.random.default_rng(1).integers(0, 256, (8, 28, 28, 1)), jnp.uint8)
    with jax.debug_key_reuse(True):
        compiled = jax.jit(preprocess.dynamic_binarize_bytes)(jax.random.key(3), stored)
        op_by_op = preprocess.dynamic_binarize_bytes(jax.random.key(3), stored)
    np.testing.assert_array_equal(compiled, op_by_op)


def test_version_2_refuses_what_is_not_8_bit():
    with pytest.raises(ValueError, match="uint8"):
        preprocess.dynamic_binarize_bytes(jax.random.key(0), jnp.zeros((4,), jnp.int32))
