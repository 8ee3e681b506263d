"""One reader for every dataset: ``tfds`` data sources (array_record), never TensorFlow.

``read_split`` returns a whole split as numpy arrays (uint8 images ``(N, H, W, C)``,
int32 labels ``(N,)``, -1 where a dataset has no labels). Local datasets are read from
the folder ``prepare_local`` wrote; catalog datasets with ``tfds.data_source``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import tensorflow_datasets as tfds

from vae_jax.data import catalog
from vae_jax.errors import DataError


def _local_builder(data_config):
    path = catalog.local_dataset_dir(data_config.data_dir, data_config.name)
    if not (path / "dataset_info.json").exists():
        spec = catalog.CATALOG.get(data_config.name)
        idx_hint = "" if spec and spec.default_idx_dir else " --idx_dir=DIR"
        raise DataError(
            f"dataset {data_config.name!r} is not prepared in {path}; run "
            f"`python scripts/prepare_data.py --dataset={data_config.name}{idx_hint}"
            f" --data_dir={catalog.resolve_data_dir(data_config.data_dir)}`"
        )
    return tfds.builder_from_directory(str(path))


def _catalog_builder(data_config):
    data_dir = catalog.resolve_data_dir(data_config.data_dir)
    try:
        builder = tfds.builder(data_config.name, data_dir=str(data_dir))
    except tfds.core.registered.DatasetNotFoundError as e:
        raise DataError(f"data.name={data_config.name!r} is not a TFDS dataset") from e
    if not builder.is_prepared():
        raise DataError(
            f"{data_config.name!r} is not prepared in {data_dir}; run "
            f"{_prepare_command(data_config, data_dir)}"
        )
    return builder


def _prepare_command(data_config, data_dir) -> str:
    return (
        f"`python scripts/prepare_data.py --dataset={data_config.name} --source=tfds "
        f"--data_dir={data_dir}` (needs internet and TensorFlow)"
    )


def _builder(data_config):
    if data_config.source == "local":
        return _local_builder(data_config)
    if data_config.source == "tfds":
        return _catalog_builder(data_config)
    raise DataError(f"data.source={data_config.source!r}; choose one of {catalog.SOURCES}")


def open_split(data_config, split: str):
    """The random-access data source of one split."""
    builder = _builder(data_config)
    if split not in builder.info.splits:
        raise DataError(
            f"dataset {data_config.name!r} has no split {split!r}; "
            f"it has {sorted(builder.info.splits)}"
        )
    try:
        return builder.as_data_source(split=split)
    except NotImplementedError as e:  # prepared as TFRecord: no random access
        raise DataError(
            f"{data_config.name!r} in {builder.data_dir} is not stored as array_record; re-run "
            f"{_prepare_command(data_config, catalog.resolve_data_dir(data_config.data_dir))}"
        ) from e


def read_split(data_config, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All images (uint8, NHWC) and labels (int32, -1 if absent) of one split, or only the
    first ``limit`` examples."""
    source = open_split(data_config, split)
    num = min(len(source), limit) if limit else len(source)
    if num == 0:
        raise DataError(f"dataset {data_config.name!r} split {split!r} is empty")
    records = source.__getitems__(list(range(num)))
    images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    if images.ndim == 3:
        images = images[..., None]
    if "label" in records[0]:
        labels = np.asarray([int(r["label"]) for r in records], np.int32)
    else:
        labels = np.full((num,), -1, np.int32)
    return images, labels


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of a split's arrays (shape, dtype and bytes of images, then labels)."""
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
