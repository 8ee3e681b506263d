"""What the codebase knows about each dataset before reading it.

Static facts (image shape, classes, split sizes) let a config be checked, and a model be
built, before any data is read. Datasets ingested from local IDX files under a name not
listed here are described by the metadata written when they were prepared.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from vae_jax.errors import DataError

# Where Debian's dataset-fashion-mnist package installs the IDX files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

SOURCES = ("local", "tfds")
LOCAL_BUILDER_NAME = "idx_images"  # the TFDS builder that ingests IDX folders
LOCAL_VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Facts about one image dataset.

    Attributes:
      name: the name configs use (``data.name``).
      image_shape: ``(H, W, C)``.
      num_classes: number of label classes (0 when there are no labels).
      split_sizes: number of examples of each split.
      binary: the stored pixels are already {0, 1} (no binarization needed or allowed).
      default_idx_dir: where local IDX files are found when ``--idx_dir`` is not given.
      install_hint: how to obtain the local files.
    """

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    split_sizes: dict[str, int]
    binary: bool = False
    default_idx_dir: str | None = None
    install_hint: str = "pass --idx_dir=DIR with the IDX files"


_MNIST_SPLITS = {"train": 60000, "test": 10000}

CATALOG: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("mnist", (28, 28, 1), 10, _MNIST_SPLITS),
        DatasetSpec(
            "fashion_mnist",
            (28, 28, 1),
            10,
            _MNIST_SPLITS,
            default_idx_dir=DEBIAN_FASHION_MNIST_DIR,
            install_hint=(
                "install it with `apt-get install dataset-fashion-mnist` or pass --idx_dir=DIR"
            ),
        ),
        DatasetSpec("kmnist", (28, 28, 1), 10, _MNIST_SPLITS),
        DatasetSpec(
            "binarized_mnist",
            (28, 28, 1),
            0,
            {"train": 50000, "validation": 10000, "test": 10000},
            binary=True,
        ),
        DatasetSpec("cifar10", (32, 32, 3), 10, {"train": 50000, "test": 10000}),
    )
}


def default_data_dir() -> str:
    """TFDS's convention: ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def resolve_data_dir(data_dir: str | None) -> Path:
    return Path(os.path.expanduser(data_dir or default_data_dir())).absolute()


def local_dataset_dir(data_dir: str | None, name: str) -> Path:
    """The TFDS directory a local ingestion of ``name`` is (or will be) prepared in."""
    return resolve_data_dir(data_dir) / LOCAL_BUILDER_NAME / name / LOCAL_VERSION


def prepared_spec(data_dir: str | None, name: str) -> DatasetSpec | None:
    """The spec of a locally prepared dataset, read from its TFDS metadata, or None."""
    info_path = local_dataset_dir(data_dir, name) / "dataset_info.json"
    if not info_path.exists():
        return None
    info = json.loads(info_path.read_text())
    features = (
        json.loads((info_path.parent / "features.json").read_text())
        if (info_path.parent / "features.json").exists()
        else None
    )
    shape = _image_shape_from_features(features)
    sizes = {
        split["name"]: int(sum(int(n) for n in split.get("shardLengths", [])))
        for split in info.get("splits", [])
    }
    num_classes = _num_classes_from_features(features)
    known = CATALOG.get(name)
    return DatasetSpec(
        name=name,
        image_shape=shape or (known.image_shape if known else (0, 0, 0)),
        num_classes=num_classes if num_classes is not None else (known.num_classes if known else 0),
        split_sizes=sizes,
        binary=known.binary if known else False,
    )


def _feature_entries(features: dict | None) -> dict:
    if not features:
        return {}
    return features.get("featuresDict", {}).get("features", {})


def _image_shape_from_features(features: dict | None) -> tuple[int, int, int] | None:
    image = _feature_entries(features).get("image", {})
    dims = image.get("tensor", {}).get("shape", {}).get("dimensions")
    return tuple(int(d) for d in dims) if dims else None


def _num_classes_from_features(features: dict | None) -> int | None:
    label = _feature_entries(features).get("label", {})
    num = label.get("classLabel", {}).get("numClasses")
    return int(num) if num is not None else None


def get_spec(data_config) -> DatasetSpec:
    """The spec of the dataset a data config names; a one-line error if unknown."""
    name = data_config.name
    if data_config.source == "local":
        prepared = prepared_spec(data_config.data_dir, name)
        if prepared is not None:
            return prepared
    if name in CATALOG:
        return CATALOG[name]
    raise DataError(
        f"data.name={name!r} is neither a known dataset ({', '.join(sorted(CATALOG))}) "
        f"nor prepared under {local_dataset_dir(data_config.data_dir, name)}; "
        f"prepare it with `python scripts/prepare_data.py --dataset={name} --idx_dir=DIR`"
    )


def image_shape(data_config) -> tuple[int, int, int]:
    return get_spec(data_config).image_shape
