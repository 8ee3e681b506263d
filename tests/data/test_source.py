"""``vae_jax/data/source.py``: the reader (errors naming the value, no TensorFlow, TFDS
catalog datasets through the same reader) and the data fingerprints, which cover every
byte and label of every example."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests.helpers.idx_data import _data_config, synthetic_images, write_idx_folder
from tests.helpers.repo import REPO, subprocess_env
from tests.helpers.tiny import tiny_with
from vae_jax import data
from vae_jax.data import catalog, idx, ingest, load_dataset, source
from vae_jax.errors import DataError

# --- Fingerprints cover every byte of every example. ---


def _split_arrays(num=12, seed=0):
    images, labels = synthetic_images(num, seed)
    return images[..., None], labels.astype(np.int32)


def _alter(images, labels, what: str, index: int):
    images, labels = images.copy(), labels.copy()
    if what == "first image byte":
        images[index, 0, 0, 0] ^= 1
    elif what == "last image byte":
        images[index, -1, -1, -1] ^= 1
    elif what == "label":
        labels[index] = (labels[index] + 1) % 10
    else:
        raise ValueError(what)
    return images, labels


@pytest.mark.parametrize("index", [0, 6, 11], ids=["first", "middle", "last"])
@pytest.mark.parametrize("what", ["first image byte", "last image byte", "label"])
def test_fingerprint_changes_with_any_single_byte_or_label(what, index):
    images, labels = _split_arrays()
    before = source.fingerprint(images, labels)
    assert source.fingerprint(images.copy(), labels.copy()) == before
    assert source.fingerprint(*_alter(images, labels, what, index)) != before


@pytest.mark.parametrize(("i", "j"), [(0, 11), (5, 6)], ids=["ends", "neighbours"])
def test_fingerprint_changes_when_two_examples_swap(i, j):
    images, labels = _split_arrays()
    assert not np.array_equal(images[i], images[j])
    order = np.arange(len(images))
    order[[i, j]] = order[[j, i]]
    assert source.fingerprint(images[order], labels[order]) != source.fingerprint(images, labels)


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory):
    """A small IDX folder (40 train, 10 test) and its train arrays as written."""
    folder = tmp_path_factory.mktemp("small") / "idx"
    arrays = write_idx_folder(folder, 40, 10)
    return folder, arrays


def _recorded_fingerprints(idx_folder: Path, data_dir: Path) -> dict:
    ingest.prepare_local("fashion_mnist", idx_folder, str(data_dir))
    return load_dataset(tiny_with(str(data_dir))).record["fingerprint_sha256"]


@pytest.mark.parametrize(
    ("what", "index"),
    [("first image byte", 0), ("label", 20), ("last image byte", 39)],
    ids=["first-example-pixel", "middle-example-label", "last-example-pixel"],
)
def test_recorded_train_fingerprint_covers_every_example(small_idx, tmp_path, what, index):
    """README: the data's sha256 fingerprints are recorded in every result; one example that
    differs in the IDX files gives another recorded fingerprint."""
    folder, arrays = small_idx
    images, labels = arrays["train"]
    recorded = _recorded_fingerprints(folder, tmp_path / "tfds")
    # The record is the fingerprint of the arrays exactly as written.
    assert recorded["train"] == source.fingerprint(images[..., None], labels.astype(np.int32))
    altered = tmp_path / "idx_altered"
    shutil.copytree(folder, altered)
    new_images, new_labels = _alter(images[..., None], labels.astype(np.int32), what, index)
    idx.write_idx(altered / "train-images-idx3-ubyte.gz", new_images[..., 0])
    idx.write_idx(altered / "train-labels-idx1-ubyte.gz", new_labels.astype(np.uint8))
    recorded_altered = _recorded_fingerprints(altered, tmp_path / "tfds_altered")
    assert recorded_altered["train"] != recorded["train"]
    assert recorded_altered["train"] == source.fingerprint(new_images, new_labels)
    assert recorded_altered["test"] == recorded["test"]


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


def test_fingerprint_changes_with_one_pixel():
    images = np.zeros((3, 2, 2, 1), np.uint8)
    labels = np.zeros(3, np.int32)
    before = source.fingerprint(images, labels)
    images[1, 0, 0, 0] = 1
    assert source.fingerprint(images, labels) != before
    assert source.fingerprint(images, labels) == source.fingerprint(images.copy(), labels)
