"""The train state every run saves and restores: step count, parameters, optimizer state."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any


@functools.partial(jax.jit, static_argnums=(0, 1))
def create_train_state(vae, optimizer: optax.GradientTransformation, init_key) -> TrainState:
    """Step 0: parameters from ``init_key`` and a fresh optimizer state (compiled: one
    program instead of hundreds of small ones, and once per model and optimizer)."""
    params = vae.init(init_key)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params))


@jax.jit
def param_norm(params) -> jax.Array:
    """Global L2 norm of the parameters."""
    return optax.global_norm(params)
