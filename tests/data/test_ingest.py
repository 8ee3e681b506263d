"""``vae_jax/data/ingest.py``: local IDX files into a TFDS dataset: the exact pixels and
labels round trip, ingestion is idempotent and records its source files, bad input fails
clearly and writes nothing, an interrupted ingestion leaves nothing the reader accepts; the
real Fashion-MNIST files where Debian's package installed them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.idx_data import _corrupt, _data_config, write_idx_folder
from vae_jax.data import catalog, ingest, source
from vae_jax.errors import DataError

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
