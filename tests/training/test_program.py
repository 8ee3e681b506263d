"""The program builder (vae_jax/training/program.py) and the static/traced split of the
hyperparameters (vae_jax/hyperparameters.py): one builder, the switches said once."""

from __future__ import annotations

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.repo import REPO
from tests.helpers.runs import apply_overrides
from vae_jax import hyperparameters, objectives, optimizers
from vae_jax.core import rng
from vae_jax.data import load_dataset
from vae_jax.train_state import create_train_state
from vae_jax.training.program import build_program
from vae_jax.training.trainer import epoch_with_traced_hyperparameters, trainer_from_config

SWITCHES_ON = {
    "objective.free_bits": 0.3,
    "objective.kl_warmup_steps": 7,
    "optimizer.grad_clip_norm": 2.0,
}


def _program(config):
    dataset = load_dataset(config)
    program = build_program(
        config,
        image_shape=dataset.image_shape,
        preprocessing=dataset.preprocessing,
        num_train_examples=dataset.train.num_examples,
    )
    return program, dataset


def test_switched_on_names_the_switches_above_zero(tiny_config):
    assert hyperparameters.switched_on(tiny_config) == frozenset()
    apply_overrides(tiny_config, SWITCHES_ON)
    assert hyperparameters.switched_on(tiny_config) == frozenset(SWITCHES_ON)
    # Exactly the switches the traced pytree carries.
    traced = hyperparameters.traced_values(tiny_config)
    assert set(hyperparameters.SWITCHES) <= set(traced)


@pytest.mark.parametrize("overrides", [{}, SWITCHES_ON], ids=["switches_off", "switches_on"])
@pytest.mark.slow
def test_the_program_is_the_epoch_every_caller_compiled_before(tiny_config, overrides):
    """``Program.train_epoch`` traces to the jaxpr of ``epoch_with_traced_hyperparameters``
    (the public name, kept) and its initial state is the trainer's: one builder."""
    apply_overrides(tiny_config, overrides)
    program, dataset = _program(tiny_config)
    args = (tiny_config, dataset.image_shape, dataset.preprocessing, dataset.train.num_examples)
    streams = rng.make_streams(3)
    state = program.initial_state(streams.init)
    trainer = trainer_from_config(*args)
    expected = create_train_state(trainer.vae, trainer.optimizer, streams.init)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    inputs = (state, streams, dataset.train.images, jnp.int32(0), program.hyperparameters)
    ours = jax.make_jaxpr(program.train_epoch)(*inputs)
    theirs = jax.make_jaxpr(epoch_with_traced_hyperparameters(*args))(*inputs)
    assert str(ours) == str(theirs)
    assert program.steps_per_epoch == trainer.steps_per_epoch


@pytest.mark.slow
def test_one_compiled_program_serves_other_hyperparameters(tiny_config):
    """The values are inputs: another beta and learning rate change the result, not the
    program; the same values give the same bits as a fresh compilation."""
    program, dataset = _program(tiny_config)
    streams = rng.make_streams(0)
    images = dataset.train.images
    epoch, seconds = program.compile(
        program.initial_state(streams.init), streams, images, program.hyperparameters
    )
    assert seconds > 0
    other = {**program.hyperparameters, "objective.beta": jnp.float32(0.25)}
    compiled = jax.jit(program.train_epoch).lower(
        program.initial_state(streams.init), streams, images, jnp.int32(0), other
    )
    state_other, _ = compiled.compile()(
        program.initial_state(streams.init), streams, images, jnp.int32(0), other
    )
    state, _ = epoch(program.initial_state(streams.init), streams, images, jnp.int32(0))
    first = lambda s: np.asarray(jax.tree.leaves(s.params)[0])
    assert not np.array_equal(first(state), first(state_other))
    again, _ = jax.jit(program.train_epoch)(
        program.initial_state(streams.init), streams, images, jnp.int32(0), program.hyperparameters
    )
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_switches_are_said_not_read_from_traced_values():
    """``make_objective`` takes the switches that are on explicitly with traced values;
    ``kl_weight`` and ``make_optimizer`` take None for a branch that is not there."""
    steps = jnp.arange(5)
    np.testing.assert_array_equal(
        objectives.kl_weight(steps, beta=0.5, warmup_steps=None), np.full(5, 0.5, np.float32)
    )
    # 0 steps of warm-up is exactly beta as well (min(1, inf) = 1).
    np.testing.assert_array_equal(
        objectives.kl_weight(steps, beta=0.5, warmup_steps=0), np.full(5, 0.5, np.float32)
    )
    params = {"w": jnp.linspace(-1, 1, 7)}
    grads = {"w": jnp.linspace(5.0, -3.0, 7)}
    unclipped = optimizers.make_optimizer(1e-2, grad_clip_norm=None)
    clipped = optimizers.make_optimizer(1e-2, grad_clip_norm=0.5)

    def second_update(optimizer):  # Adam's first update is the sign: take two
        state = optimizer.update(grads, optimizer.init(params), params)[1]
        small = jax.tree.map(lambda g: g / 100, grads)
        return optimizer.update(small, state, params)[0]["w"]

    assert not np.allclose(second_update(unclipped), second_update(clipped))


def test_make_objective_with_switched_on_given_traces_the_branch_it_names(tiny_model_parts):
    vae, params, x, mask = tiny_model_parts

    def loss(free_bits, on):
        objective = objectives.make_objective(
            vae, kl="analytic", free_bits=free_bits, switched_on=on
        )
        return objective(params, jax.random.key(0), x, mask, jnp.int32(0))[0]

    plain = jax.jit(objectives.make_objective(vae))(
        params, jax.random.key(0), x, mask, jnp.int32(0)
    )[0]
    off = jax.jit(lambda fb: loss(fb, ()))(jnp.float32(100.0))
    on = jax.jit(lambda fb: loss(fb, ("free_bits",)))(jnp.float32(100.0))
    # the branch is not there: the value is not read
    np.testing.assert_allclose(float(off), float(plain), rtol=1e-6)
    assert float(on) > float(plain)  # 100 nats per dimension penalized


@pytest.fixture
def tiny_model_parts():
    from vae_jax import model

    vae = model.make_vae(image_shape=(4, 4, 1), latent_dim=2, hidden_sizes=(8,))
    params = vae.init(jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (6, 4, 4, 1)).astype(jnp.float32)
    return vae, params, x, jnp.ones((6,), bool)


def test_no_factory_asks_whether_a_value_is_traced():
    """The split is made once (vae_jax/hyperparameters.py): no module of the package
    branches on ``isinstance(..., jax.Array)`` or on a tracer's type."""
    found = []
    for path in sorted((REPO / "vae_jax").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                text = ast.unparse(node.args[1])
                if "Array" in text or "Tracer" in text:
                    found.append(f"{Path(path).relative_to(REPO)}:{node.lineno}: {text}")
    assert found == []
