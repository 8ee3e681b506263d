"""The reproduced table's rows (experiments/configs/reproduce/): each row's training step
against its floor, and its epoch time here, for ``scripts/benchmark.py --sections=reproduction``.

The floor of a step is its matrix products (counted in the step's jaxpr: every
``dot_general`` and convolution, forward and backward) at the matrix-product rate, plus
one optimizer update (a memory pass over parameters, gradients and moments), plus the
binarization's random bits, each of the last two compiled and timed on its own.

Every part is timed as the fastest of its repetitions, as the matrix-product rate is (the
best of its measurements): on a shared machine other work only adds time, and the medians
of a row's step moved by up to 40% between two runs minutes apart here, their minima by a
few percent.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from sweep_benchmark import synthetic_images, timed  # scripts/, this file's directory

from experiments.reproductions import rows as rows_lib
from vae_jax.core import rng
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.training import step as step_lib
from vae_jax.training.program import build_program

IMAGE_SHAPE = (28, 28, 1)
PROTOCOL_TRAIN = 50_000  # the protocol's training images: an epoch's steps
PROTOCOL_VALIDATION = 10_000


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, jax.extend.core.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jax.extend.core.Jaxpr):
                yield item


def product_flops(jaxpr) -> float:
    """FLOPs of every matrix product and convolution in ``jaxpr`` (2 per multiply-add),
    nested jaxprs included (a ``scan`` counts its body times its length)."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (contracting, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            depth = math.prod(lhs[d] for d in contracting)
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * depth
        elif name == "conv_general_dilated":
            kernel = eqn.invars[1].aval.shape
            spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
            per_output = math.prod(kernel[d] for d in spec[1:])
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
        inner = sum(product_flops(sub) for sub in _sub_jaxprs(eqn))
        total += inner * (eqn.params.get("length", 1) if name == "scan" else 1)
    return total


def bench_row(config, rate: float, repeats: int, num_train: int) -> dict:
    """One row: its step's products, floor and time, and its epoch time estimated for the
    protocol's 50,000 training images (and 10,000 validation images, one forward pass each
    at the same rate as the step's forward third)."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    program = build_program(
        config, image_shape=IMAGE_SHAPE, preprocessing=preprocessing, num_train_examples=num_train
    )
    trainer = program.trainer()
    images = synthetic_images(num_train)
    streams = rng.make_streams(0)
    state = program.initial_state(streams.init)
    batch_size = config.training.batch_size
    x = jax.random.bernoulli(jax.random.key(1), images[:batch_size] / 255.0).astype(jnp.float32)
    batch = step_lib.Batch(x, jnp.ones((batch_size,), bool))
    key = jax.random.key(2)
    flops = product_flops(jax.make_jaxpr(trainer.train_step)(state, batch, key).jaxpr)
    grads = jax.tree.map(jnp.ones_like, state.params)
    update = jax.jit(lambda g, s, p: optax.apply_updates(p, trainer.optimizer.update(g, s, p)[0]))
    binarize = jax.jit(preprocessing.train_input)  # the row's own draw (its protocol version)
    epoch_fn = program.train_epoch
    traced = program.hyperparameters
    epoch = jax.jit(epoch_fn).lower(state, streams, images, jnp.int32(0), traced).compile()
    epoch_seconds = timed(
        lambda: epoch(state, streams, images, jnp.int32(0), traced),
        repeats=3 * repeats,
        statistic=min,
    )
    step_ms = epoch_seconds / trainer.steps_per_epoch * 1e3
    optimizer_ms = (
        timed(update, grads, state.opt_state, state.params, repeats=repeats * 5, statistic=min)
        * 1e3
    )
    bits_ms = timed(binarize, images[:batch_size], key, repeats=repeats * 5, statistic=min) * 1e3
    products_ms = flops / (rate * 1e9) * 1e3
    floor_ms = products_ms + optimizer_ms + bits_ms
    steps = PROTOCOL_TRAIN // batch_size
    validation_seconds = flops / 3 * PROTOCOL_VALIDATION / batch_size / (rate * 1e9)
    return {
        "product_gflop_per_step": flops / 1e9,
        "step_ms": step_ms,
        "floor_ms": floor_ms,
        "floor_parts_ms": {
            "products_at_matmul_rate": products_ms,
            "optimizer_update": optimizer_ms,
            "binarization_bits": bits_ms,
        },
        "step_over_floor": step_ms / floor_ms,
        "protocol_epoch_seconds": step_ms * steps / 1e3 + validation_seconds,
    }


def bench_rows(
    names, rate: float, repeats: int, num_train: int, epoch_unroll: int | None = None
) -> dict:
    """``bench_row`` of each row name (experiments/reproductions/rows.py), with
    ``training.epoch_unroll`` set to ``epoch_unroll`` where given (else the row's)."""
    found = {}
    for name in names:
        config = rows_lib.BY_NAME[name].config()
        if epoch_unroll is not None:
            config.training.epoch_unroll = epoch_unroll
        found[name] = bench_row(config, rate, repeats, num_train)
        found[name]["epoch_unroll"] = config.training.epoch_unroll
    return found
