"""scripts/reproduction_benchmark.py: the products a row's step is floored by, counted in
its jaxpr, against the hand count of the MLP's layers (no timing checked)."""

from __future__ import annotations

import importlib
import sys

import jax
import jax.numpy as jnp
import pytest

from experiments.configs import tiny
from tests.helpers.repo import REPO
from vae_jax.core import rng
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.train_state import create_train_state
from vae_jax.training import step as step_lib
from vae_jax.training.trainer import trainer_from_config


@pytest.fixture(scope="module")
def scripts():
    """scripts/reproduction_benchmark.py and scripts/benchmark.py as modules."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        yield (
            importlib.import_module("reproduction_benchmark"),
            importlib.import_module("benchmark"),
        )
    finally:
        sys.path.remove(str(REPO / "scripts"))


def _step_jaxpr(config, batch_size: int):
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    trainer = trainer_from_config(config, (28, 28, 1), preprocessing, 1000)
    state = jax.eval_shape(
        lambda: create_train_state(trainer.vae, trainer.optimizer, rng.make_streams(0).init)
    )
    batch = step_lib.Batch(jnp.zeros((batch_size, 28, 28, 1)), jnp.ones((batch_size,), bool))
    return jax.make_jaxpr(trainer.train_step)(state, batch, jax.random.key(0)).jaxpr


@pytest.mark.parametrize("hidden_sizes", [(32,), (64, 16)])
def test_the_products_counted_in_a_step_are_the_mlps_layers(scripts, hidden_sizes):
    """An MLP VAE's training step: forward products, weight gradients and input gradients
    except the data's, i.e. ``benchmark.matmul_flops``'s hand count per example times the
    batch (fails if the counter missed the backward pass, counted a product twice, or
    used the wrong contracting size)."""
    reproduction_benchmark, benchmark = scripts
    config = tiny.get_config()
    config.model.hidden_sizes = hidden_sizes
    batch_size = 10
    counted = reproduction_benchmark.product_flops(_step_jaxpr(config, batch_size))
    expected = benchmark.matmul_flops(config)["train_step"] * batch_size
    assert counted == pytest.approx(expected, rel=1e-12)


def test_a_scan_counts_its_body_times_its_length(scripts):
    """Products inside a ``lax.scan`` count once per iteration."""
    reproduction_benchmark, _ = scripts
    w = jnp.ones((3, 5))

    def body(carry, x):
        return carry, x @ w

    jaxpr = jax.make_jaxpr(lambda xs: jax.lax.scan(body, 0.0, xs))(jnp.ones((7, 2, 3))).jaxpr
    assert reproduction_benchmark.product_flops(jaxpr) == 7 * 2 * (2 * 5 * 3)
