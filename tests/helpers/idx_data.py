"""Generated MNIST-style data: learnable uint8 images, the IDX files that hold them, one
kind of damage at a time (``_corrupt``), and a config reading them (``_data_config``)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from experiments.configs import tiny
from vae_jax.data import idx


def synthetic_images(num: int, seed: int, image_shape=(28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """Learnable uint8 images: one smooth template per class, noise, random brightness."""
    rng = np.random.default_rng(seed)
    height, width = image_shape
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    template_rng = np.random.default_rng(1234)  # the same ten classes in every split
    templates = []
    for _ in range(10):
        cy, cx, sy, sx = template_rng.uniform([0.25, 0.25, 0.08, 0.08], [0.75, 0.75, 0.3, 0.3])
        templates.append(np.exp(-(((yy - cy) / sy) ** 2) - ((xx - cx) / sx) ** 2))
    labels = rng.integers(0, 10, size=num)
    brightness = rng.uniform(0.6, 1.0, size=(num, 1, 1))
    noise = rng.normal(0, 0.05, size=(num, height, width))
    images = np.clip(np.stack(templates)[labels] * brightness + noise, 0, 1)
    return (images * 255).round().astype(np.uint8), labels.astype(np.uint8)


def write_idx_folder(
    folder: Path, num_train: int, num_test: int, *, seed: int = 0, compress: bool = True
) -> dict:
    """Writes MNIST-style IDX files into ``folder``; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    arrays = {}
    for split, prefix, num in (("train", "train", num_train), ("test", "t10k", num_test)):
        images, labels = synthetic_images(num, seed + (split == "test"))
        idx.write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        idx.write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[split] = (images, labels)
    return arrays


def _data_config(data_dir, name="fashion_mnist", **overrides):
    config = tiny.get_config()
    config.data.name = name
    config.data.data_dir = str(data_dir)
    for field, value in overrides.items():
        setattr(config.data, field, value)
    return config


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
