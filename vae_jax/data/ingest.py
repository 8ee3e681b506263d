"""Offline ingestion: a folder of IDX files -> a TFDS dataset (array_record).

``prepare_local`` validates every file first (so bad input fails before anything is
written), builds the dataset with a small TFDS builder in a staging folder, and only then
moves it into place with one rename: an interrupted ingestion leaves nothing the reader
would accept; the staging folder a killed ingestion leaves is deleted by the next one. A
second call finds the prepared dataset and does nothing.

The image feature is a raw ``tfds.features.Tensor`` (uint8), which TFDS writes and reads
without TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from vae_jax.data import catalog, idx


class IdxImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """TFDS builder for in-memory IDX arrays; one builder config per dataset name."""

    VERSION = tfds.core.Version(catalog.LOCAL_VERSION)
    RELEASE_NOTES = {catalog.LOCAL_VERSION: "Ingested from local IDX files."}  # noqa: RUF012

    def __init__(self, *, splits: dict, num_classes: int, source: dict, **kwargs):
        self._splits = splits
        self._num_classes = num_classes
        self._source = source
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        images, _ = next(iter(self._splits.values()))
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.builder_config.name} ingested from IDX files in "
            f"{self._source['idx_dir']}.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=images.shape[1:], dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=self._num_classes),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # keep the IDX order: example i is IDX record i
            metadata=tfds.core.MetadataDict(self._source),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in self._splits}

    def _generate_examples(self, split):
        images, labels = self._splits[split]
        for i in range(len(images)):
            yield i, {"image": images[i], "label": int(labels[i])}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_idx_folder(name: str, idx_dir: str | Path) -> tuple[dict, int, dict]:
    """Reads and checks both splits of an IDX folder: (splits, num_classes, source)."""
    idx_dir = Path(idx_dir)
    spec = catalog.CATALOG.get(name)
    if not idx_dir.is_dir():
        hint = spec.install_hint if spec else "pass --idx_dir=DIR with the IDX files"
        raise idx.IdxError(f"IDX folder not found: {idx_dir}; {hint}")
    splits = {split: idx.read_split(idx_dir, split) for split in ("train", "test")}
    shapes = {split: images.shape[1:] for split, (images, _) in splits.items()}
    if shapes["train"] != shapes["test"]:
        raise idx.IdxError(f"{idx_dir}: train images are {shapes['train']}, test {shapes['test']}")
    max_label = max(int(labels.max()) for _, labels in splits.values())
    num_classes = spec.num_classes if spec and spec.num_classes else max_label + 1
    if max_label >= num_classes:
        raise idx.IdxError(f"{idx_dir}: label {max_label} out of range for {name} ({num_classes})")
    if spec and tuple(shapes["train"]) != spec.image_shape:
        raise idx.IdxError(
            f"{idx_dir}: images are {tuple(shapes['train'])}, {name} has {spec.image_shape}"
        )
    files = {
        idx.split_file(idx_dir, split, kind).name: _sha256(idx.split_file(idx_dir, split, kind))
        for split in ("train", "test")
        for kind in ("images", "labels")
    }
    source = {"format": "idx", "idx_dir": str(idx_dir.absolute()), "sha256": files}
    return splits, num_classes, source


def prepare_local(
    name: str,
    idx_dir: str | Path | None = None,
    data_dir: str | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Ingests the IDX files of ``name`` into ``data_dir``; returns the dataset folder.

    Idempotent: if the dataset is already prepared (and ``overwrite`` is False), nothing is
    read or written.
    """
    target = catalog.local_dataset_dir(data_dir, name)
    if (target / "dataset_info.json").exists() and not overwrite:
        logging.info("%s is already prepared in %s; nothing to do", name, target)
        return target
    if idx_dir is None:
        spec = catalog.CATALOG.get(name)
        if spec is None or spec.default_idx_dir is None:
            raise idx.IdxError(f"no default IDX folder for {name!r}; pass --idx_dir=DIR")
        idx_dir = spec.default_idx_dir
    splits, num_classes, source = read_idx_folder(name, idx_dir)

    staging_root = catalog.resolve_data_dir(data_dir) / ".staging"
    remove_abandoned_staging(staging_root)
    staging = staging_root / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    try:
        builder = IdxImages(
            splits=splits,
            num_classes=num_classes,
            source=source,
            config=tfds.core.BuilderConfig(name=name),
            data_dir=str(staging),
            file_format="array_record",
        )
        builder.download_and_prepare()  # nothing to download: the arrays are in memory
        built = Path(builder.data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        retired = staging / "retired"
        if target.exists():  # overwrite: move the old copy aside only once the new is built
            target.rename(retired)
        try:
            built.rename(target)  # the single step that makes the dataset visible
        except OSError:
            if retired.exists():
                retired.rename(target)  # put the old copy back
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if staging_root.exists() and not any(staging_root.iterdir()):
            staging_root.rmdir()
    logging.info("prepared %s in %s", name, target)
    return target


def remove_abandoned_staging(staging_root: Path) -> list[Path]:
    """Deletes the staging folders of ingestions killed on this host (named
    ``<host>-<pid>-<uuid>``, with no process ``pid`` alive); returns what was deleted.
    Folders of live processes, of other hosts, or not named this way are left alone."""
    removed = []
    if not staging_root.is_dir():
        return removed
    host = socket.gethostname()
    for folder in staging_root.iterdir():
        owner_host, _, rest = folder.name.rpartition("-")[0].rpartition("-")
        pid = rest if owner_host else ""
        if owner_host == host and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            logging.info("removed %s, left by a killed ingestion", folder)
            removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True
