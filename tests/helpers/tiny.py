"""The ``tiny`` config and model as unit tests use them: ``tiny_with(**overrides)``, its
sizes on the generated data, a batch whose end is padding, and the objective built from a
config group (the internals the bookkeeping tests need, in one place)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from experiments.configs import tiny
from tests.helpers.runs import apply_overrides

# --- Internals the tests need, in one place (an upcoming restructure renames them). ---


def make_objective(vae, objective_config):
    from vae_jax import objectives

    return objectives.make_objective(vae, **objective_config)


# --- Shared settings and helpers. ---

# tiny: 600 source train examples, the last 10% carved for validation, batches of 50.
NUM_TRAIN = 600 - round(0.1 * 600)
STEPS_PER_EPOCH = math.ceil(NUM_TRAIN / 50)


def tiny_with(data_dir: str | None = None, **overrides):
    config = tiny.get_config()
    if data_dir is not None:
        config.data.data_dir = data_dir
    return apply_overrides(config, overrides)


# --- A batch of NUM_VALID examples whose last NUM_PADDED rows are padding. ---

NUM_VALID, NUM_PADDED = 5, 3


def _padded_batch(padding_probability: float):
    valid = jax.random.bernoulli(jax.random.key(1), 0.3, (NUM_VALID, 28, 28, 1))
    padding = jax.random.bernoulli(jax.random.key(9), padding_probability, (NUM_PADDED, 28, 28, 1))
    x = jnp.concatenate([valid, padding]).astype(jnp.float32)
    mask = jnp.arange(NUM_VALID + NUM_PADDED) < NUM_VALID
    return x, mask
