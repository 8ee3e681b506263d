"""Named key streams: fixed derivation, independence, per-step keys, sweeps over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.core import rng


def _bits(key):
    return np.asarray(jax.random.key_data(key))


def test_streams_are_fold_ins_of_the_root_by_fixed_id():
    streams = rng.make_streams(3)
    root = jax.random.key(3)
    for name, stream_id in rng.STREAM_IDS.items():
        np.testing.assert_array_equal(
            _bits(getattr(streams, name)), _bits(jax.random.fold_in(root, stream_id))
        )
    # The ids are part of the reproducibility contract: never renumber them.
    assert rng.STREAM_IDS == {
        "init": 0,
        "data": 1,
        "binarize": 2,
        "latent": 3,
        "eval": 4,
        "generate": 5,
    }


def test_streams_are_typed_keys_and_distinct():
    streams = rng.make_streams(0)
    for key in streams:
        assert jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    draws = {name: float(jax.random.normal(key)) for name, key in streams._asdict().items()}
    assert len(set(draws.values())) == len(draws)


def test_step_keys_depend_only_on_stream_and_step():
    stream = rng.make_streams(1).latent
    a = jax.random.normal(rng.step_key(stream, 41), (3,))
    b = jax.random.normal(rng.step_key(stream, jnp.uint32(41)), (3,))
    c = jax.random.normal(rng.step_key(stream, 42), (3,))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_streams_vmap_over_seeds_equal_single_seeds():
    seeds = jnp.arange(4)
    batched = jax.vmap(rng.make_streams)(seeds)
    for i in range(4):
        single = rng.make_streams(i)
        np.testing.assert_array_equal(_bits(batched.latent[i]), _bits(single.latent))


def test_same_seed_same_bits_different_seed_different_bits():
    assert np.array_equal(
        jax.random.normal(rng.make_streams(7).init, (5,)),
        jax.random.normal(rng.make_streams(7).init, (5,)),
    )
    assert not np.array_equal(
        jax.random.normal(rng.make_streams(7).init, (5,)),
        jax.random.normal(rng.make_streams(8).init, (5,)),
    )


def test_example_keys_independent_of_batching():
    key = rng.eval_key(rng.make_streams(0).eval, "test_iwae")
    all_keys = rng.example_keys(key, jnp.arange(10))
    some_keys = rng.example_keys(key, jnp.arange(4, 7))
    np.testing.assert_array_equal(_bits(all_keys[4:7]), _bits(some_keys))


def test_unknown_names_fail_clearly():
    with pytest.raises(ValueError, match="unknown key stream 'dropout'"):
        rng.stream(jax.random.key(0), "dropout")
    with pytest.raises(ValueError, match="unknown evaluation purpose"):
        rng.eval_key(jax.random.key(0), "nope")


def test_describe_records_the_documented_layout():
    # What manifest.json records, written out literally: a renamed field or a renumbered
    # id changes what a reader of an old manifest would look up.
    assert rng.describe() == {
        "derivation": "stream = fold_in(key(seed), stream_id); per step: fold_in(stream, step)",
        "stream_ids": {"init": 0, "data": 1, "binarize": 2, "latent": 3, "eval": 4, "generate": 5},
        "eval_purpose_ids": {
            "validation": 0,
            "test_elbo": 1,
            "test_iwae": 2,
            "mutual_information": 3,
            "figures": 4,
            "randomness": 5,
        },
        "data_keys": {
            "derivation": "fold_in(key(seed), tag); a fixed binarization: "
            "fold_in(fold_in(key(binarization_seed), tag), split_id)",
            "tags": {"binarization": 1000, "split": 1001},
        },
        "default_impl": "threefry2x32",
    }
    assert rng.key_impl_name(rng.root_key(0)) == "threefry2x32"
    assert rng.key_impl_name(rng.root_key(0, impl="rbg")) == "rbg"


def test_the_key_implementation_reaches_every_stream():
    # A run recorded with another implementation (manifest "key_impl") must rebuild it.
    streams = rng.make_streams(5, impl="rbg")
    root = jax.random.key(5, impl="rbg")
    for name, stream_id in rng.STREAM_IDS.items():
        key = getattr(streams, name)
        assert rng.key_impl_name(key) == "rbg"
        np.testing.assert_array_equal(_bits(key), _bits(jax.random.fold_in(root, stream_id)))


def test_data_keys_have_their_own_tags_above_every_stream_id():
    """The data's keys are fold_in(key(seed), tag) with tags no stream id reaches (so under
    one root key a data key is never a stream key), and a binarization key folds in the
    split id; tests/promises/test_key_derivations.py checks the bits against every run key."""
    assert rng.DATA_KEY_TAGS == {"binarization": 1000, "split": 1001}
    assert max(rng.STREAM_IDS.values()) < rng.STREAM_IDS_BELOW <= min(rng.DATA_KEY_TAGS.values())
    for seed in (0, 7):
        root = jax.random.key(seed)
        np.testing.assert_array_equal(
            _bits(rng.data_key(seed, "split")), _bits(jax.random.fold_in(root, 1001))
        )
        np.testing.assert_array_equal(
            _bits(rng.binarization_key(seed, 2)),
            _bits(jax.random.fold_in(jax.random.fold_in(root, 1000), 2)),
        )
    with pytest.raises(ValueError, match="unknown data key 'labels'"):
        rng.data_key(0, "labels")
