"""Shared test fixtures: small generated IDX datasets, prepared once per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from experiments.configs import tiny
from vae_jax.data import idx, ingest

REPO = Path(__file__).resolve().parents[1]

# One persistent XLA compilation cache for the whole test run: the pytest processes and
# every subprocess they start (which inherit the environment) compile each program once
# and load it afterwards. A hit needs the identical program, so it changes no number a
# test compares; the cache starts empty in every run and is removed at its end.
CACHE_VARIABLES = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def pytest_configure(config):
    import jax

    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # the first process of the run
        config.compilation_cache_created = tempfile.mkdtemp(prefix="vae_jax_tests_xla_cache_")
        os.environ["JAX_COMPILATION_CACHE_DIR"] = config.compilation_cache_created
        os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


def pytest_unconfigure(config):
    created = getattr(config, "compilation_cache_created", None)
    if created:
        shutil.rmtree(created, ignore_errors=True)


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


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding a generated 'fashion_mnist' (600 train, 100 test)."""
    root = tmp_path_factory.mktemp("tiny_data")
    write_idx_folder(root / "idx", 600, 100)
    ingest.prepare_local("fashion_mnist", root / "idx", str(root / "tfds"))
    return str(root / "tfds")


class TinyRun(NamedTuple):
    workdir: Path
    epochs: int
    compilations: dict  # XLA compilations per function name while it trained


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data_dir) -> TinyRun:
    """The ``tiny`` config as it is (seed 0, 3 epochs) trained in-process once per test
    process, with XLA's compilations counted. Read it; copy the workdir to change it."""
    from run_helpers import counting_compilations

    from vae_jax.single_run import train_and_evaluate

    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    with counting_compilations() as compilations:
        train_and_evaluate(config, workdir)
    return TinyRun(workdir, config.training.num_epochs, dict(compilations))


@pytest.fixture
def tiny_config(tiny_data_dir):
    """The ``tiny`` experiment config reading the generated data."""
    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    return config


def subprocess_env(**extra) -> dict:
    """Environment for running entry points in a subprocess (the project is installed, so
    nothing is added to the path): os.environ plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    return env
