"""``training.epoch_unroll``: how many steps one iteration of the epoch's compiled loop runs.

Unrolling changes how XLA fuses and buffers the steps, never which steps run or what they
draw: each step gets the same batch, mask and keys at every unroll, an epoch whose step
count the unroll does not divide still runs every step, and training agrees with the
step-by-step loop to float rounding. The config's value reaches the compiled loop.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.tiny import NUM_TRAIN, tiny_with
from vae_jax.core import rng
from vae_jax.data import batching
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.train_state import create_train_state
from vae_jax.training import step as step_lib
from vae_jax.training.trainer import trainer_from_config

IMAGE_SHAPE = (28, 28, 1)
BATCH = 50
NUM_EXAMPLES = 5 * BATCH - 20  # 5 steps, the last one masked: 2 and 3 do not divide it


def _images(num_examples: int) -> jnp.ndarray:
    pixels = np.random.default_rng(0).integers(0, 256, (num_examples, *IMAGE_SHAPE))
    return jnp.asarray(pixels, jnp.uint8)


def _recorded_inputs(unroll: int):
    """What the epoch hands its step at ``unroll``: per step the batch, mask and key bits."""

    def recording_step(state, batch, key):
        record = {"x": batch.x, "mask": batch.mask, "key": jax.random.key_data(key)}
        return state._replace(step=state.step + 1), record

    config = tiny_with()
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    epoch = step_lib.make_train_epoch(
        recording_step, preprocessing, NUM_EXAMPLES, BATCH, unroll=unroll
    )
    state = step_lib.TrainState(jnp.int32(7), None, None)  # a resumed run's step counter
    state, record = jax.jit(epoch)(state, rng.make_streams(3), _images(NUM_EXAMPLES), 1)
    return int(state.step), jax.device_get(record)


@pytest.mark.parametrize("unroll", [2, 3, 5, 8])
def test_every_unroll_runs_the_same_steps_with_the_same_batches_and_keys(unroll):
    steps, expected = _recorded_inputs(1)
    assert steps == 7 + 5
    steps_unrolled, record = _recorded_inputs(unroll)
    assert steps_unrolled == steps  # a remainder the unroll does not divide still runs
    for name in ("x", "mask", "key"):
        np.testing.assert_array_equal(record[name], expected[name], err_msg=name)
    assert record["mask"][-1].sum() == BATCH - 20  # the masked last batch is the last step


def _trainer(config, num_examples: int = NUM_EXAMPLES):
    """``(trainer, preprocessing)`` of ``config`` over ``num_examples`` stored images."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    return trainer_from_config(config, IMAGE_SHAPE, preprocessing, num_examples), preprocessing


def _trained(config, num_steps_loop: bool):
    """Params and per-step losses after one epoch of ``config`` on fixed images, by the
    compiled epoch or (``num_steps_loop``) by jitted steps called one by one with the keys
    the epoch documents (``fold_in(stream, step)``) on the batches it gathers."""
    trainer, preprocessing = _trainer(config)
    streams = rng.make_streams(config.seed)
    state = create_train_state(trainer.vae, trainer.optimizer, streams.init)
    images = _images(NUM_EXAMPLES)
    if not num_steps_loop:
        state, metrics = jax.jit(trainer.train_epoch)(state, streams, images, 0)
        return state.params, np.asarray(metrics["loss"])
    order = batching.epoch_batches(rng.step_key(streams.data, 0), NUM_EXAMPLES, BATCH)
    step = jax.jit(trainer.train_step)
    losses = []
    for indices, mask in zip(*jax.device_get(order), strict=True):
        x = preprocessing.train_input(images[indices], rng.step_key(streams.binarize, state.step))
        key = rng.step_key(streams.latent, state.step)
        state, metrics = step(state, step_lib.Batch(x, jnp.asarray(mask)), key)
        losses.append(metrics["loss"])
    return state.params, np.asarray(losses)


@pytest.mark.slow
def test_an_unrolled_epoch_trains_as_the_steps_one_by_one():
    config = tiny_with(**{"training.batch_size": BATCH, "training.epoch_unroll": 2})
    params, losses = _trained(config, num_steps_loop=False)
    loop_params, loop_losses = _trained(config, num_steps_loop=True)
    assert len(losses) == 5
    np.testing.assert_allclose(losses, loop_losses, rtol=1e-5)
    for leaf, loop_leaf in zip(jax.tree.leaves(params), jax.tree.leaves(loop_params), strict=True):
        np.testing.assert_allclose(leaf, loop_leaf, rtol=1e-4, atol=1e-6)
    initial = _trainer(config)[0].vae.init(rng.make_streams(config.seed).init)
    moved = max(
        float(jnp.abs(a - b).max())
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(initial), strict=True)
    )
    assert moved > 1e-3  # the comparison is of trained parameters, not of the initial ones


@pytest.mark.parametrize("unroll", [1, 2, 4])
def test_the_configs_unroll_reaches_the_compiled_loop(unroll):
    config = tiny_with(**{"training.epoch_unroll": unroll})
    trainer, _ = _trainer(config, NUM_TRAIN)
    streams = rng.make_streams(0)
    state = jax.eval_shape(
        lambda key: create_train_state(trainer.vae, trainer.optimizer, key), streams.init
    )
    jaxpr = jax.make_jaxpr(trainer.train_epoch)(state, streams, _images(NUM_TRAIN), 0)
    scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    assert [e.params["unroll"] for e in scans] == [unroll]
