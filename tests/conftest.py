"""Shared test fixtures: small generated IDX datasets, prepared once per session, and one
trained ``tiny`` run per test process. Helpers that are not fixtures live in
``tests/helpers/``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import pytest

from experiments.configs import tiny
from tests.helpers.idx_data import write_idx_folder
from vae_jax.data import ingest

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
    from tests.helpers.runs import counting_compilations
    from vae_jax.single_run import train_and_evaluate

    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    with counting_compilations() as compilations:
        train_and_evaluate(config, workdir)
    return TinyRun(workdir, config.training.num_epochs, dict(compilations))


@pytest.fixture(scope="module")
def tiny_model():
    """The tiny VAE, its initial parameters and its ELBO compiled once per test module."""
    import jax

    import vae_jax

    vae = vae_jax.vae_from_config(tiny.get_config(), (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    elbo = jax.jit(vae.elbo, static_argnames=("num_samples", "kl"))
    return vae, params, elbo


@pytest.fixture
def tiny_config(tiny_data_dir):
    """The ``tiny`` experiment config reading the generated data."""
    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    return config
