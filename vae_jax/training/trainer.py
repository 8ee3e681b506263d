"""The pieces of training: model, objective, optimizer, the pure step and the epoch.

``trainer_of`` makes them from a config and the hyperparameters' values (numbers, or the
traced pytree inside the epoch): the one place ``vae_jax.training.program`` and the older
``trainer_from_config`` and ``epoch_with_traced_hyperparameters`` get them from.
"""

from __future__ import annotations

from typing import NamedTuple

import optax

from vae_jax import adapter, model
from vae_jax.data import batching
from vae_jax.data.preprocess import Preprocessing
from vae_jax.training import step as step_lib


class Trainer(NamedTuple):
    vae: model.VAE
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    train_step: object  # pure (state, batch, key) -> (state, metrics)
    train_epoch: object  # pure (state, streams, images, epoch) -> (state, step metrics)
    steps_per_epoch: int


def make_trainer(
    *,
    vae: model.VAE,
    objective,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    preprocessing: Preprocessing,
    num_train_examples: int,
    batch_size: int,
    batch_sharding=None,
    epoch_unroll: int = 1,
) -> Trainer:
    """The step and the epoch of a model trained with ``objective`` and ``optimizer``.

    Args:
      vae: the model's pure functions.
      objective: ``objective(params, key, x, mask, step) -> (loss, metrics)``.
      optimizer: the optax transformation; ``schedule`` is its learning rate.
      schedule: the learning-rate schedule, reported per step.
      preprocessing: turns stored images into model input (binarizing with a key).
      num_train_examples: examples in one epoch.
      batch_size: examples per step; the last batch of an epoch is masked.
      batch_sharding: optional placement of each batch on a device mesh.
      epoch_unroll: training steps per iteration of the epoch's compiled loop.
    """
    train_step = step_lib.make_train_step(objective, optimizer, schedule)
    train_epoch = step_lib.make_train_epoch(
        train_step,
        preprocessing,
        num_train_examples,
        batch_size,
        batch_sharding=batch_sharding,
        unroll=epoch_unroll,
    )
    steps_per_epoch = batching.num_batches(num_train_examples, batch_size)
    return Trainer(vae, optimizer, schedule, train_step, train_epoch, steps_per_epoch)


def trainer_of(
    config,
    vae: model.VAE,
    preprocessing: Preprocessing,
    num_train_examples: int,
    batch_sharding=None,
    values: dict | None = None,
) -> Trainer:
    """The trainer of ``config`` for ``vae``, with the hyperparameters ``values`` (traced
    scalars by field name, ``vae_jax.hyperparameters.traced_values``; None: the config's
    numbers, baked in). The switches that are on are the config's."""
    optimizer, schedule = adapter.optimizer_from_config(
        config, adapter.total_steps(config, num_train_examples), values
    )
    return make_trainer(
        vae=vae,
        objective=adapter.objective_from_config(vae, config, values, num_train_examples),
        optimizer=optimizer,
        schedule=schedule,
        preprocessing=preprocessing,
        num_train_examples=num_train_examples,
        batch_size=config.training.batch_size,
        batch_sharding=batch_sharding,
        epoch_unroll=config.training.epoch_unroll,
    )


def trainer_from_config(
    config,
    image_shape: tuple[int, int, int],
    preprocessing: Preprocessing,
    num_train_examples: int,
    batch_sharding=None,
    traced: dict | None = None,
) -> Trainer:
    """The trainer a config describes (through ``vae_jax.adapter``); the fields in
    ``traced`` (``vae_jax.hyperparameters.traced_values``) are taken from there."""
    vae = adapter.vae_from_config(config, image_shape)
    return trainer_of(config, vae, preprocessing, num_train_examples, batch_sharding, traced)


def epoch_with_traced_hyperparameters(
    config,
    image_shape: tuple[int, int, int],
    preprocessing: Preprocessing,
    num_train_examples: int,
    batch_sharding=None,
):
    """``train_epoch(state, streams, images, epoch, traced)``: the epoch of
    ``vae_jax.training.program.build_program``, its hyperparameters taken at call time."""
    vae = adapter.vae_from_config(config, image_shape)

    def train_epoch(state, streams, images, epoch, traced):
        trainer = trainer_of(config, vae, preprocessing, num_train_examples, batch_sharding, traced)
        return trainer.train_epoch(state, streams, images, epoch)

    return train_epoch
