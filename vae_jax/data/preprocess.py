"""Preprocessing that says what it did: intensities, binarization protocols, 8-bit integers.

Images stay uint8 on the device; ``train_input`` and ``eval_input`` turn a gathered batch
into what the model sees, inside the compiled step:

* ``none``: intensities ``x / 255`` in [0, 1] (continuous Bernoulli, Gaussian), or the
  integers themselves for the discretized logistic.
* ``static``: one fixed binarization of every split, drawn once with the key
  ``fold_in(fold_in(key(binarization_seed), 1000), split_id)`` (``rng.binarization_key``:
  the data's own tag 1000, so it is no run's stream key; ``static_method="sample"``) or
  by thresholding at 0.5 (``"threshold"``); identical in every run that names it.
* ``dynamic``: a fresh ``Bernoulli(x / 255)`` draw per example per step with the key
  ``fold_in(binarize_stream, step)`` (Burda et al., 2015); validation and test images are
  binarized once, as ``static`` with ``sample``, so every run is scored on the same bits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.core import draws, likelihoods, rng

BINARIZATIONS = ("none", "static", "dynamic")
STATIC_METHODS = ("sample", "threshold")
# Fixed ids of the source splits in the static binarization key (recorded).
SPLIT_IDS = {"train": 0, "test": 1, "validation": 2}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How stored uint8 images become model inputs (static; hashable for jit)."""

    kind: str  # likelihoods.BINARY | INTENSITY | INTEGER
    binarization: str = "none"
    static_method: str = "sample"
    binarization_seed: int = 0
    already_binary: bool = False  # the stored pixels are {0, 1} (e.g. binarized_mnist)

    def store_for_evaluation(self, images: np.ndarray, split: str) -> np.ndarray:
        """The uint8 array kept on the device to evaluate on a source split: binarized
        once (static, and dynamic's evaluation protocol), else the pixels as read."""
        if self.already_binary or self.binarization == "none":
            return images
        method = self.static_method if self.binarization == "static" else "sample"
        return binarize_once(images, method, self.binarization_seed, split)

    def store_for_training(self, images: np.ndarray) -> np.ndarray:
        """The uint8 array kept on the device to train on: as for evaluation, except that
        dynamic binarization keeps the intensities and draws afresh at every step."""
        if self.binarization == "dynamic" and not self.already_binary:
            return images
        return self.store_for_evaluation(images, "train")

    def train_input(self, stored: jax.Array, binarize_key: jax.Array) -> jax.Array:
        """A training batch as the model sees it (``binarize_key`` used only if dynamic)."""
        if self.binarization == "dynamic" and not self.already_binary:
            return dynamic_binarize(binarize_key, stored)
        return self.eval_input(stored)

    def eval_input(self, stored: jax.Array) -> jax.Array:
        """A validation or test batch as the model sees it (no randomness)."""
        if self.kind == likelihoods.INTEGER:
            return stored.astype(jnp.int32)
        scale = 1.0 if self.binarized_at_rest else 1.0 / 255.0
        return stored.astype(jnp.float32) * scale

    @property
    def binarized_at_rest(self) -> bool:
        """Whether stored validation/test images are already {0, 1}."""
        return self.already_binary or self.binarization != "none"

    def describe(self) -> dict:
        """The protocol, as recorded in every result."""
        if self.kind == likelihoods.INTEGER:
            representation = "8-bit integers in {0, ..., 255}"
        elif self.kind == likelihoods.INTENSITY:
            representation = "intensities x / 255 in [0, 1]"
        else:
            representation = "binary {0, 1}"
        protocol = {"binarization": self.binarization, "representation": representation}
        tag = rng.DATA_KEY_TAGS["binarization"]
        static_key = (
            f"fold_in(fold_in(key({self.binarization_seed}), {tag}), split_id), "
            f"split_id={SPLIT_IDS}"
        )
        if self.already_binary:
            protocol["binarization"] = "none (the dataset is stored binarized)"
        elif self.binarization == "static":
            protocol["train"] = protocol["evaluation"] = (
                f"one Bernoulli(x / 255) draw per pixel, key {static_key}"
                if self.static_method == "sample"
                else "threshold: x / 255 > 0.5"
            )
            protocol["static_method"] = self.static_method
        elif self.binarization == "dynamic":
            protocol["train"] = (
                "fresh Bernoulli(x / 255) draw per example per step, key "
                "fold_in(binarize_stream, step)"
            )
            protocol["evaluation"] = f"one Bernoulli(x / 255) draw per pixel, key {static_key}"
        if self.binarization != "none":
            protocol["binarization_seed"] = self.binarization_seed
        return protocol


def binarize_once(images: np.ndarray, method: str, seed: int, split: str) -> np.ndarray:
    """A fixed binarization of a whole split, as uint8 {0, 1}."""
    if method == "threshold":
        return (images > 127).astype(np.uint8)
    if method != "sample":
        raise ValueError(f"static binarization method {method!r}; choose one of {STATIC_METHODS}")
    key = rng.binarization_key(seed, SPLIT_IDS[split])
    probabilities = jnp.asarray(images, jnp.float32) / 255.0
    return np.asarray(draws.bernoulli(key, probabilities)).astype(np.uint8)


def dynamic_binarize(key: jax.Array, stored: jax.Array) -> jax.Array:
    """A fresh binarization ``Bernoulli(x / 255)`` of a uint8 batch, as float32."""
    probabilities = stored.astype(jnp.float32) / 255.0
    return draws.bernoulli(key, probabilities).astype(jnp.float32)


def make_preprocessing(data_config, likelihood: str, already_binary: bool) -> Preprocessing:
    return Preprocessing(
        kind=likelihoods.get_spec(likelihood).data_kind,
        binarization=data_config.binarization,
        static_method=data_config.static_binarization,
        binarization_seed=int(data_config.binarization_seed),
        already_binary=already_binary,
    )
