"""``vae_jax/hyperparameters.py``: which configs share a program (traced values and the seed
do; a switch turned on or a shape does not), and traced hyperparameters compute what the
constants do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers.runs import (
    apply_overrides,
)
from vae_jax import hyperparameters, objectives, optimizers


def test_which_configs_share_a_program(tiny_config):
    def key(**overrides):
        config = apply_overrides(tiny_config.copy_and_resolve_references(), overrides)
        return hyperparameters.structure_key(config)

    base = key()
    # Traced values and the seed share the program ...
    for field, value in [("objective.beta", 0.3), ("optimizer.learning_rate", 0.01),
                         ("optimizer.b1", 0.5), ("optimizer.b2", 0.9), ("optimizer.eps", 1e-6),
                         ("seed", 5)]:  # fmt: skip
        assert key(**{field: value}) == base, field
    assert key(**{"objective.free_bits": 0.5}) == key(**{"objective.free_bits": 2.0})
    # ... a switch turned on, or a shape, does not.
    for field, value in [("objective.free_bits", 0.5), ("objective.kl_warmup_steps", 10),
                         ("optimizer.grad_clip_norm", 1.0), ("model.latent_dim", 8),
                         ("training.batch_size", 25), ("objective.num_samples", 2)]:  # fmt: skip
        assert key(**{field: value}) != base, field
    traced = hyperparameters.traced_values(tiny_config)
    assert "objective.free_bits" not in traced  # off: its branch is not in the program
    assert traced["optimizer.learning_rate"].dtype == jnp.float32
    tiny_config.objective.kl_warmup_steps = 10
    traced = hyperparameters.traced_values(tiny_config)
    assert traced["objective.kl_warmup_steps"].dtype == jnp.int32
    assert int(traced["objective.kl_warmup_steps"]) == 10


@pytest.mark.slow
def test_traced_hyperparameters_compute_what_the_constants_do():
    # The KL weight and the learning-rate schedule with traced values against the
    # documented formulas; Adam with traced b1, b2 against optax with constants.
    steps = jnp.arange(0, 40)
    weight = jax.jit(lambda b, w: objectives.kl_weight(steps, beta=b, warmup_steps=w))
    expected = 0.5 * np.minimum(1.0, (np.arange(40) + 1.0) / 25)
    np.testing.assert_allclose(weight(jnp.float32(0.5), jnp.int32(25)), expected, rtol=1e-6)
    schedule = jax.jit(
        lambda lr, r: jax.vmap(
            optimizers.learning_rate_schedule(
                learning_rate=lr,
                total_steps=100,
                schedule="warmup_cosine",
                warmup_steps=10,
                final_learning_rate_ratio=r,
            )
        )(steps)
    )
    constant = optax.warmup_cosine_decay_schedule(0.0, 2e-3, 10, 100, 2e-3 * 0.1)
    np.testing.assert_allclose(
        schedule(jnp.float32(2e-3), jnp.float32(0.1)), jax.vmap(constant)(steps), rtol=1e-5
    )
    params = {"w": jnp.linspace(-1, 1, 7)}
    grads = {"w": jnp.linspace(0.5, -0.3, 7)}

    def update(lr, b1, b2, clip):
        optimizer = optimizers.make_optimizer(lr, b1=b1, b2=b2, grad_clip_norm=clip)
        state = optimizer.init(params)
        for _ in range(3):
            updates, state = optimizer.update(grads, state, params)
        return updates["w"]

    traced = jax.jit(update)(*(jnp.float32(v) for v in (1e-2, 0.8, 0.95, 0.5)))
    reference = update(1e-2, 0.8, 0.95, 0.5)
    np.testing.assert_allclose(traced, reference, rtol=1e-5)
    clipped_by_norm = optax.clip_by_global_norm(0.5).update(grads, optax.EmptyState())[0]["w"]
    assert float(jnp.linalg.norm(clipped_by_norm)) == pytest.approx(0.5, rel=1e-5)
