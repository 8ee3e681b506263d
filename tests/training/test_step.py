"""``vae_jax/training/step.py``: a train step is optax's update of the objective's gradient,
and its metrics are that gradient's norm and the schedule at the step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests.helpers.tiny import NUM_TRAIN, NUM_VALID, _padded_batch, make_objective, tiny_with


def one_train_step(config, params, x, mask, key):
    """The project's train step from ``config``, once from ``params``: the new parameters
    and the step's metrics."""
    from vae_jax.training import step as step_lib
    from vae_jax.training.trainer import trainer_from_config

    trainer = trainer_from_config(config, (28, 28, 1), None, NUM_TRAIN)
    state = step_lib.TrainState(jnp.int32(0), params, trainer.optimizer.init(params))
    state, metrics = jax.jit(trainer.train_step)(state, step_lib.Batch(x, mask), key)
    return state.params, metrics


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer",
    [
        {"optimizer.name": "adam"},
        {"optimizer.name": "adamw", "optimizer.weight_decay": 0.5},
        {"optimizer.name": "adamw", "optimizer.weight_decay": 0.5, "optimizer.grad_clip_norm": 0.1},
    ],
    ids=["adam", "adamw", "adamw_clipped"],
)
def test_a_train_step_is_the_optax_update_of_the_objectives_gradient(tiny_model, optimizer):
    """One step: the gradient of the objective's loss, then optax's own Adam/AdamW (after
    global-norm clipping when set), as base.py documents each field; metrics report that
    gradient's norm and the schedule at the step taken."""
    vae, params, _ = tiny_model
    config = tiny_with(**optimizer)
    x, mask = _padded_batch(0.95)
    key = jax.random.key(4)
    new_params, metrics = one_train_step(config, params, x, mask, key)
    loss_fn = make_objective(vae, config.objective)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p, key, x, mask, jnp.int32(0))[0]))(params)
    o = config.optimizer
    if o.name == "adam":
        reference = optax.adam(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
    else:
        reference = optax.adamw(
            o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay
        )
    if o.grad_clip_norm > 0:
        reference = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), reference)
    expected = jax.jit(
        lambda g, p: optax.apply_updates(p, reference.update(g, reference.init(p), p)[0])
    )(grads, params)
    for got, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads), rtol=1e-5)
    assert float(metrics["learning_rate"]) == np.float32(o.learning_rate)
    assert float(metrics["num_examples"]) == NUM_VALID
    # Weight decay moves every parameter by lr * decay * value: far beyond the tolerance.
    if o.name == "adamw":
        adam = optax.adam(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
        without_decay = optax.apply_updates(params, adam.update(grads, adam.init(params))[0])
        kernel = lambda tree: np.asarray(tree["encoder"]["mlp"]["dense_0"]["kernel"])
        assert np.max(np.abs(kernel(without_decay) - kernel(new_params))) > 1e-5
