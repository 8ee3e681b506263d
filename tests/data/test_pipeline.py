"""``vae_jax/data/pipeline.py``: ``load_dataset``: validation carved by a recorded keyed rule
(or in file order), the protocol and fingerprints recorded, static binarization independent
of the carving, the binarization version recorded, integer and intensity
representations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import data
from vae_jax.data import preprocess

# --- splits, binarization, batching --------------------------------------------------


def test_validation_is_carved_by_a_recorded_keyed_rule(tiny_config):
    train_idx, val_idx, rule = data.pipeline.validation_rule(tiny_config.data, 600)
    assert len(val_idx) == 60
    assert len(train_idx) == 540
    assert set(train_idx).isdisjoint(val_idx)
    assert set(train_idx) | set(val_idx) == set(range(600))
    again = data.pipeline.validation_rule(tiny_config.data, 600)[1]
    np.testing.assert_array_equal(val_idx, again)
    tiny_config.data.split_seed = 1
    assert not np.array_equal(val_idx, data.pipeline.validation_rule(tiny_config.data, 600)[1])
    assert "permutation(fold_in(key(0), 1001), 600)" in rule["validation"]


def test_validation_in_file_order_is_the_last_images_of_train(tiny_config):
    """``validation_order="last"``: the VampPrior and Exemplar-VAE code's split, no shuffle:
    ``x_val = x_train[train_num:]`` (fails if the permutation were still applied)."""
    tiny_config.data.validation_order = "last"
    tiny_config.data.validation_fraction = 1 / 6
    train_idx, val_idx, rule = data.pipeline.validation_rule(tiny_config.data, 60000)
    np.testing.assert_array_equal(train_idx, np.arange(50000))
    np.testing.assert_array_equal(val_idx, np.arange(50000, 60000))
    assert "file order" in rule["validation"]
    assert rule["num_validation"] == 10000


def test_dataset_records_protocol_and_fingerprints(tiny_config):
    dataset = data.load_dataset(tiny_config)
    record = dataset.record
    assert record["protocol"]["binarization"] == "dynamic"
    assert "fold_in(binarize_stream, step)" in record["protocol"]["train"]
    assert record["num_examples"] == {"train": 540, "validation": 60, "test": 100}
    assert set(record["fingerprint_sha256"]) == {"train", "test"}
    # Validation and test are binarized once; train keeps intensities for dynamic draws.
    assert set(np.unique(np.asarray(dataset.validation.images))) <= {0, 1}
    assert set(np.unique(np.asarray(dataset.test.images))) <= {0, 1}
    assert np.asarray(dataset.train.images).max() > 1
    assert data.load_dataset(tiny_config).record == record


def test_static_binarization_is_fixed_and_independent_of_carving(tiny_config):
    tiny_config.data.binarization = "static"
    a = data.load_dataset(tiny_config)
    tiny_config.data.validation_fraction = 0.2
    b = data.load_dataset(tiny_config)
    np.testing.assert_array_equal(a.test.images, b.test.images)
    train_a, val_a, _ = data.pipeline.validation_rule(tiny_config.data, 600)
    # An example binarizes the same whichever split it lands in.
    full = preprocess.binarize_once(
        data.pipeline.read_source_splits(tiny_config.data)["train"][0], "sample", 0, "train"
    )
    np.testing.assert_array_equal(b.validation.images, full[val_a])
    np.testing.assert_array_equal(b.train.images, full[train_a])
    threshold = preprocess.binarize_once(
        np.array([[0, 127, 128, 255]], np.uint8), "threshold", 0, "x"
    )
    np.testing.assert_array_equal(threshold, [[0, 0, 1, 1]])


def test_the_version_is_recorded_and_a_change_is_named_in_one_line(tiny_config):
    """Version 2 records its version and its draw; version 1's record is the one runs
    wrote before versions existed (so they resume), and a resume or evaluation across
    versions finds the difference in one line naming the version."""
    from vae_jax.run import files

    assert tiny_config.data.binarization_version == 2  # new runs
    version_2 = data.load_dataset(tiny_config)
    assert version_2.preprocessing.binarization_version == 2
    protocol = version_2.record["protocol"]
    assert protocol["binarization_version"] == 2
    assert protocol["train"] == (
        "fresh Bernoulli(x / 255) draw per example per step, key "
        "fold_in(binarize_stream, step): pixel x is 1 iff u < x for a byte u of "
        "jax.random.bits(key, (ceil(n / 4),), uint32) (byte b of word w, bits 8b..8b+7, is "
        "pixel 4w + b of the flattened batch); a byte 255 is redrawn: in round r = 1, 2, ... "
        "the pixels still at 255, in order, take the bytes of jax.random.bits(fold_in(key, "
        "r), (ceil(n / 512),), uint32) in order"
    )
    tiny_config.data.binarization_version = 1
    version_1 = data.load_dataset(tiny_config)
    assert (
        version_1.record["protocol"]
        == preprocess.Preprocessing(
            kind="binary", binarization="dynamic", binarization_seed=0
        ).describe()
    )  # as test_dynamic_and_plain_protocols_are_recorded_as_documented writes it
    # Only the training draw changes: the stored splits are the same arrays.
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(
            np.asarray(getattr(version_1, split).images),
            np.asarray(getattr(version_2, split).images),
        )
    assert version_1.record["fingerprint_sha256"] == version_2.record["fingerprint_sha256"]
    for recorded, now, a, b in ((version_1, version_2, 2, None), (version_2, version_1, None, 2)):
        assert files.protocol_difference(recorded.record, now.record) == (
            f"the data's protocol.binarization_version is {a!r} now but {b!r} in the run's manifest"
        )
    # Static binarization and intensities draw nothing per step: no version recorded.
    for binarization in ("static", "none"):
        plain = preprocess.Preprocessing(
            kind="binary", binarization=binarization, binarization_version=2
        )
        assert "binarization_version" not in plain.describe()


def test_integer_and_intensity_representations(tiny_config):
    tiny_config.data.binarization = "none"
    tiny_config.model.likelihood = "discretized_logistic"
    dataset = data.load_dataset(tiny_config)
    x = dataset.preprocessing.eval_input(dataset.test.images[:2])
    assert x.dtype == jnp.int32
    assert int(x.max()) > 1
    tiny_config.model.likelihood = "gaussian"
    dataset = data.load_dataset(tiny_config)
    x = dataset.preprocessing.train_input(dataset.train.images[:2], jax.random.key(0))
    assert x.dtype == jnp.float32
    assert 0 <= float(x.min())
    assert float(x.max()) <= 1
    assert "intensities" in dataset.record["protocol"]["representation"]
