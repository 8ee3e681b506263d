"""``load_dataset``: the splits of a run, held once in device memory, with their record.

Reads the source splits, carves the validation split from train by a recorded rule,
applies the static part of the preprocessing, and places uint8 arrays on the device.
Nothing is decoded per step afterwards: batches are gathered by index inside the
compiled epoch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.core import rng
from vae_jax.data import catalog, preprocess, source


@dataclasses.dataclass(frozen=True)
class Split:
    """One split on the device: stored uint8 images and int32 labels (-1 if none)."""

    images: jax.Array
    labels: jax.Array

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The splits of a run and everything a result must record about them."""

    name: str
    image_shape: tuple[int, int, int]
    num_classes: int
    train: Split
    validation: Split | None
    test: Split
    preprocessing: preprocess.Preprocessing
    record: dict  # protocol, split rule and fingerprints (goes into every result)


VALIDATION_ORDERS = ("permuted", "last")


def validation_rule(data_config, num_train: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train and validation indices into the source train split, and the recorded rule."""
    fraction = float(data_config.validation_fraction)
    num_validation = round(fraction * num_train)
    if data_config.get("validation_order", "permuted") == "last":
        # The VampPrior and Exemplar-VAE code: the last images in file order (no shuffle).
        rule = {
            "validation": f"the last {fraction:g} of the train split in file order",
            "num_train": num_train - num_validation,
            "num_validation": num_validation,
        }
        return (
            np.arange(num_train - num_validation),
            np.arange(num_train - num_validation, num_train),
            rule,
        )
    split_seed = int(data_config.split_seed)
    permutation = np.asarray(jax.random.permutation(rng.data_key(split_seed, "split"), num_train))
    train_indices = np.sort(permutation[: num_train - num_validation])
    validation_indices = np.sort(permutation[num_train - num_validation :])
    rule = {
        "validation": (
            f"the last {fraction:g} of the train split after "
            f"jax.random.permutation(fold_in(key({split_seed}), "
            f"{rng.DATA_KEY_TAGS['split']}), {num_train})"
        ),
        "num_train": len(train_indices),
        "num_validation": len(validation_indices),
    }
    return train_indices, validation_indices, rule


def read_source_splits(data_config) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The raw (uint8) source splits a run uses, with ``limit_*`` applied."""
    raw = {
        "train": source.read_split(data_config, "train", int(data_config.limit_train)),
        "test": source.read_split(data_config, "test", int(data_config.limit_test)),
    }
    if data_config.validation_split:
        raw["validation"] = source.read_split(data_config, data_config.validation_split)
    return raw


def preprocess_splits(data_config, preprocessing, raw) -> tuple[dict, dict]:
    """Stored arrays of train, validation and test, and the recorded split rule."""
    train_images, train_labels = raw["train"]
    train_stored = preprocessing.store_for_training(train_images)
    if data_config.validation_split:
        validation_images, validation_labels = raw["validation"]
        validation = (
            preprocessing.store_for_evaluation(validation_images, "validation"),
            validation_labels,
        )
        split_rule = {"validation": f"the dataset's {data_config.validation_split!r} split"}
    else:
        train_indices, validation_indices, split_rule = validation_rule(
            data_config, len(train_images)
        )
        # Validation is scored like test: carved from train as binarized for evaluation.
        train_for_evaluation = (
            preprocessing.store_for_evaluation(train_images, "train")
            if preprocessing.binarization == "dynamic"
            else train_stored
        )
        validation = (
            train_for_evaluation[validation_indices],
            train_labels[validation_indices],
        )
        train_stored, train_labels = train_stored[train_indices], train_labels[train_indices]
    if data_config.limit_train or data_config.limit_test:
        split_rule["limits"] = {
            "train": int(data_config.limit_train) or "all",
            "test": int(data_config.limit_test) or "all",
            "rule": "the first N examples of the source split, before carving validation",
        }
    test_images, test_labels = raw["test"]
    stored = {
        "train": (train_stored, train_labels),
        "validation": validation,
        "test": (preprocessing.store_for_evaluation(test_images, "test"), test_labels),
    }
    return stored, split_rule


def load_dataset(config) -> Dataset:
    """Loads the dataset ``config.data`` names, preprocessed for ``config.model.likelihood``."""
    data_config = config.data
    spec = catalog.get_spec(data_config)
    preprocessing = preprocess.make_preprocessing(
        data_config, config.model.likelihood, already_binary=spec.binary
    )
    raw = read_source_splits(data_config)
    stored, split_rule = preprocess_splits(data_config, preprocessing, raw)
    splits = {
        name: Split(jnp.asarray(images), jnp.asarray(labels, jnp.int32)) if len(images) else None
        for name, (images, labels) in stored.items()
    }
    record = {
        "dataset": data_config.name,
        "source": data_config.source,
        "image_shape": [int(d) for d in raw["train"][0].shape[1:]],
        "num_classes": spec.num_classes,
        "protocol": preprocessing.describe(),
        "splits": split_rule,
        "num_examples": {name: len(images) for name, (images, _) in stored.items()},
        # Of the source splits as read, before any preprocessing or carving.
        "fingerprint_sha256": {name: source.fingerprint(*arrays) for name, arrays in raw.items()},
    }
    return Dataset(
        name=data_config.name,
        image_shape=tuple(int(d) for d in raw["train"][0].shape[1:]),
        num_classes=spec.num_classes,
        train=splits["train"],
        validation=splits["validation"],
        test=splits["test"],
        preprocessing=preprocessing,
        record=record,
    )
