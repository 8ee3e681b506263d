"""Data: ingestion round trip, bad input, keyed batching, binarization, no TensorFlow."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import REPO, subprocess_env, write_idx_folder

from experiments.configs import tiny
from vae_jax import data
from vae_jax.data import batching, catalog, idx, ingest, preprocess, source
from vae_jax.errors import DataError


def _data_config(data_dir, name="fashion_mnist", **overrides):
    config = tiny.get_config()
    config.data.name = name
    config.data.data_dir = str(data_dir)
    for field, value in overrides.items():
        setattr(config.data, field, value)
    return config


# --- ingestion -----------------------------------------------------------------------


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_idx_round_trip_exact_pixels_and_labels(tmp_path, compress):
    arrays = write_idx_folder(tmp_path / "idx", 70, 30, seed=3, compress=compress)
    ingest.prepare_local("my_digits", tmp_path / "idx", str(tmp_path / "tfds"))
    config = _data_config(tmp_path / "tfds", name="my_digits")
    for split in ("train", "test"):
        images, labels = source.read_split(config.data, split)
        np.testing.assert_array_equal(images, arrays[split][0][..., None])
        np.testing.assert_array_equal(labels, arrays[split][1])
    spec = catalog.get_spec(config.data)
    assert spec.image_shape == (28, 28, 1)
    assert spec.split_sizes == {"train": 70, "test": 30}


def test_ingestion_is_idempotent(tmp_path):
    write_idx_folder(tmp_path / "idx", 20, 10)
    first = ingest.prepare_local("fashion_mnist", tmp_path / "idx", str(tmp_path / "tfds"))
    stamp = (first / "dataset_info.json").stat().st_mtime_ns
    # A second call does not even read the IDX folder (here: gone).
    for f in (tmp_path / "idx").iterdir():
        f.unlink()
    second = ingest.prepare_local("fashion_mnist", tmp_path / "idx", str(tmp_path / "tfds"))
    assert second == first
    assert (first / "dataset_info.json").stat().st_mtime_ns == stamp


def test_source_files_are_recorded(tmp_path):
    write_idx_folder(tmp_path / "idx", 20, 10)
    path = ingest.prepare_local("fashion_mnist", tmp_path / "idx", str(tmp_path / "tfds"))
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["idx_dir"] == str((tmp_path / "idx").absolute())
    assert set(metadata["sha256"]) == {
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    }


def _corrupt(folder: Path, case: str) -> str:
    """Applies one kind of damage to a generated IDX folder; returns the expected message."""
    images = folder / "train-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    if case == "truncated":
        payload = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(payload[:-100]))
        return r"train-images-idx3-ubyte\.gz: truncated: header says shape \(20, 28, 28\)"
    if case == "trailing_bytes":
        payload = gzip.decompress(images.read_bytes())
        images.write_bytes(gzip.compress(payload + b"\0" * 7))
        return "has trailing bytes"
    if case == "bad_magic":
        payload = bytearray(gzip.decompress(images.read_bytes()))
        payload[0:4] = b"\x12\x34\x56\x78"
        images.write_bytes(gzip.compress(bytes(payload)))
        return r"train-images-idx3-ubyte\.gz: bad magic number 0x12345678"
    if case == "broken_gzip":
        images.write_bytes(images.read_bytes()[:200])
        return r"train-images-idx3-ubyte\.gz: not a complete gzip file"
    if case == "count_mismatch":
        idx.write_idx(labels, np.zeros(19, np.uint8))
        return r"has 20 images but .*train-labels-idx1-ubyte\.gz has 19 labels"
    if case == "missing_file":
        labels.unlink()
        return r"train-labels-idx1-ubyte\.gz not found"
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["truncated", "trailing_bytes", "bad_magic", "broken_gzip", "count_mismatch", "missing_file"],
)
def test_corrupted_idx_input_fails_clearly_and_writes_nothing(tmp_path, case):
    write_idx_folder(tmp_path / "idx", 20, 10)
    message = _corrupt(tmp_path / "idx", case)
    with pytest.raises(DataError, match=message):
        ingest.prepare_local("fashion_mnist", tmp_path / "idx", str(tmp_path / "tfds"))
    assert not (tmp_path / "tfds").exists() or not any((tmp_path / "tfds").rglob("*.json"))


def test_missing_folder_names_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"IDX folder not found: .*apt-get install dataset-fashion"):
        ingest.prepare_local("fashion_mnist", tmp_path / "nowhere", str(tmp_path / "tfds"))
    with pytest.raises(DataError, match=r"no default IDX folder for 'mnist'; pass --idx_dir"):
        ingest.prepare_local("mnist", None, str(tmp_path / "tfds"))


@pytest.mark.slow
def test_interrupted_ingestion_leaves_nothing_the_reader_accepts(tmp_path, monkeypatch):
    write_idx_folder(tmp_path / "idx", 50, 10)

    def dies_halfway(self, split):
        images, labels = self._splits[split]
        for i in range(len(images) // 2):
            yield i, {"image": images[i], "label": int(labels[i])}
        raise KeyboardInterrupt("killed during ingestion")

    monkeypatch.setattr(ingest.IdxImages, "_generate_examples", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        ingest.prepare_local("fashion_mnist", tmp_path / "idx", str(tmp_path / "tfds"))
    config = _data_config(tmp_path / "tfds")
    with pytest.raises(DataError, match=r"is not prepared in .*scripts/prepare_data.py"):
        source.read_split(config.data, "train")
    monkeypatch.undo()
    # Leftover staging folders do not get in the way; those of killed processes on this
    # host are deleted, those of live processes (or unknown owners) are left alone.
    staging = tmp_path / "tfds" / ".staging"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    killed = staging / f"{host}-{dead.pid}-0123abcd"
    alive = staging / f"{host}-{os.getpid()}-4567abcd"
    unknown = staging / "deadbeef"
    for folder in (killed, alive, unknown):
        (folder / "half_written").mkdir(parents=True)
    ingest.prepare_local("fashion_mnist", tmp_path / "idx", str(tmp_path / "tfds"))
    assert len(source.read_split(config.data, "train")[0]) == 50
    assert not killed.exists()
    assert alive.exists()
    assert unknown.exists()


@pytest.mark.slow
def test_prepare_data_cli_reports_one_line_and_exits_nonzero(tmp_path):
    write_idx_folder(tmp_path / "idx", 20, 10)
    _corrupt(tmp_path / "idx", "truncated")
    result = subprocess.run(
        [
            sys.executable,
            "scripts/prepare_data.py",
            f"--idx_dir={tmp_path / 'idx'}",
            f"--data_dir={tmp_path / 'tfds'}",
        ],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: "), result.stderr
    assert "truncated" in last_line
    assert "Traceback" not in result.stderr


# --- reading -------------------------------------------------------------------------


def test_reader_errors_name_the_value(tiny_data_dir, tmp_path):
    with pytest.raises(DataError, match=r"has no split 'validation'; it has"):
        source.read_split(_data_config(tiny_data_dir).data, "validation")
    with pytest.raises(DataError, match=r"data.name='no_such_set' is neither a known dataset"):
        catalog.get_spec(_data_config(tiny_data_dir, name="no_such_set").data)
    with pytest.raises(
        DataError, match=r"'kmnist' is not prepared in .*prepare_data.py --dataset="
    ):
        source.read_split(_data_config(tmp_path, name="kmnist").data, "train")
    with pytest.raises(DataError, match=r"data.source='web'"):
        source.read_split(_data_config(tiny_data_dir, source="web").data, "train")


@pytest.mark.slow
def test_loading_does_not_import_tensorflow(tiny_data_dir, tmp_path):
    """Even with a TensorFlow importable, loading the data must not import it: the
    'tensorflow' found first on the path here raises if anything imports it."""
    poisoned = tmp_path / "poisoned" / "tensorflow"
    poisoned.mkdir(parents=True)
    (poisoned / "__init__.py").write_text("raise RuntimeError('tensorflow was imported')\n")
    script = textwrap.dedent(
        f"""
        import importlib.util, sys
        assert importlib.util.find_spec("tensorflow") is not None  # the poisoned one
        from experiments.configs import tiny
        from vae_jax import data
        config = tiny.get_config()
        config.data.data_dir = {tiny_data_dir!r}
        dataset = data.load_dataset(config)
        assert dataset.train.num_examples == 540, dataset.train.num_examples
        assert "tensorflow" not in sys.modules
        print("no tensorflow")
        """
    )
    env = subprocess_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "poisoned"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no tensorflow" in result.stdout


class _ListSource(list):
    """A random-access source, as ``tfds.data_source`` returns, for mocked catalog data."""

    def __getitems__(self, keys):
        return [self[k] for k in keys]


def _write_catalog_metadata(data_dir: Path, name: str, sizes: dict) -> None:
    builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
    Path(builder.data_dir).mkdir(parents=True)
    template = tfds.core.ShardedFileTemplate(
        data_dir=builder.data_dir, dataset_name=name, filetype_suffix="array_record", split="train"
    )
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(
                    name=split,
                    shard_lengths=[n],
                    num_bytes=0,
                    filename_template=template.replace(split=split),
                )
                for split, n in sizes.items()
            ]
        )
    )
    builder.info.write_to_directory(builder.data_dir)


def test_tfds_catalog_datasets_go_through_the_same_reader(tmp_path):
    rng = np.random.default_rng(0)
    fake = {
        "mnist": lambda: {
            "image": rng.integers(0, 256, (28, 28, 1), dtype=np.uint8),
            "label": int(rng.integers(10)),
        },
        "binarized_mnist": lambda: {"image": rng.integers(0, 2, (28, 28, 1), dtype=np.uint8)},
    }

    def as_data_source(self, split, **kwargs):
        return _ListSource(fake[self.name]() for _ in range(12))

    _write_catalog_metadata(tmp_path, "mnist", {"train": 12, "test": 12})
    _write_catalog_metadata(
        tmp_path, "binarized_mnist", {"train": 12, "validation": 12, "test": 12}
    )
    with tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_FILES,
        data_dir=str(tmp_path),
        as_data_source_fn=as_data_source,
    ):
        images, labels = source.read_split(
            _data_config(tmp_path, "mnist", source="tfds").data, "test"
        )
        assert images.shape == (12, 28, 28, 1)
        assert images.dtype == np.uint8
        assert labels.min() >= 0
        config = _data_config(
            tmp_path,
            "binarized_mnist",
            source="tfds",
            binarization="none",
            validation_split="validation",
        )
        dataset = data.load_dataset(config)
        assert dataset.validation.num_examples == 12
        assert np.all(np.asarray(dataset.test.labels) == -1)
        assert set(np.unique(np.asarray(dataset.test.images))) <= {0, 1}
        with pytest.raises(DataError, match=r"has no split 'validation'"):
            source.read_split(_data_config(tmp_path, "mnist", source="tfds").data, "validation")
    with pytest.raises(DataError, match=r"'cifar10' is not prepared in .*--source=tfds"):
        source.read_split(_data_config(tmp_path, "cifar10", source="tfds").data, "train")


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(catalog.DEBIAN_FASHION_MNIST_DIR).exists() and os.environ.get("CI") != "true",
    reason="Debian's dataset-fashion-mnist is not installed (scripts/test.sh installs it in CI)",
)
def test_real_fashion_mnist(tmp_path, monkeypatch):
    """Debian's files, where ``prepare_local`` looks without --idx_dir, are the dataset the
    catalog (so every config check and model) assumes: 60000 + 10000 images of 28 x 28 x 1,
    10 balanced classes. They are read and checked by ``read_idx_folder``, the code that
    ingestion runs on them before anything is written; what ingestion does next (build the
    TFDS dataset, one shard per split at any of these sizes, and read it back) does not
    depend on the data and is checked pixel for pixel by the round-trip test above. Writing
    and reading back all 70000 examples here cost ~10 s and checked nothing more."""
    spec = catalog.CATALOG["fashion_mnist"]

    class Stop(Exception):
        """Raised in place of reading, so that nothing is built."""

    def stop(name, idx_dir):
        raise Stop(name, idx_dir)

    monkeypatch.setattr(ingest, "read_idx_folder", stop)
    with pytest.raises(Stop) as stopped:
        ingest.prepare_local("fashion_mnist", None, str(tmp_path))
    monkeypatch.undo()
    assert stopped.value.args == ("fashion_mnist", catalog.DEBIAN_FASHION_MNIST_DIR)
    splits, num_classes, _ = ingest.read_idx_folder("fashion_mnist", spec.default_idx_dir)
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    assert train_images.shape == (60000, 28, 28, 1)
    assert test_images.shape == (10000, 28, 28, 1)
    assert train_images.dtype == test_images.dtype == np.uint8
    assert np.bincount(train_labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10
    assert num_classes == spec.num_classes == 10  # what ingestion records as the ClassLabel
    assert spec.split_sizes == {"train": 60000, "test": 10000}
    assert spec.image_shape == train_images.shape[1:]


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


def test_fingerprint_changes_with_one_pixel():
    images = np.zeros((3, 2, 2, 1), np.uint8)
    labels = np.zeros(3, np.int32)
    before = source.fingerprint(images, labels)
    images[1, 0, 0, 0] = 1
    assert source.fingerprint(images, labels) != before
    assert source.fingerprint(images, labels) == source.fingerprint(images.copy(), labels)


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
