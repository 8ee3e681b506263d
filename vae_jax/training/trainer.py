"""The pieces of training built from a config: model, objective, optimizer, step, epoch."""

from __future__ import annotations

from typing import NamedTuple

import optax

from vae_jax import model
from vae_jax.data import batching
from vae_jax.data.preprocess import Preprocessing
from vae_jax.training import objective as objective_lib
from vae_jax.training import optimizer as optimizer_lib
from vae_jax.training import step as step_lib


class Trainer(NamedTuple):
    vae: model.VAE
    optimizer: optax.GradientTransformation
    schedule: optax.Schedule
    train_step: object  # pure (state, batch, key) -> (state, metrics)
    train_epoch: object  # pure (state, streams, images, epoch) -> (state, step metrics)
    steps_per_epoch: int
    total_steps: int


def make_trainer(
    config,
    image_shape: tuple[int, int, int],
    preprocessing: Preprocessing,
    num_train_examples: int,
    batch_sharding=None,
) -> Trainer:
    vae = model.make_vae(config, image_shape)
    steps_per_epoch = batching.num_batches(num_train_examples, config.training.batch_size)
    total_steps = steps_per_epoch * config.training.num_epochs
    optimizer = optimizer_lib.make_optimizer(config.optimizer, total_steps)
    schedule = optimizer_lib.learning_rate_schedule(config.optimizer, total_steps)
    objective = objective_lib.make_objective(vae, config.objective)
    train_step = step_lib.make_train_step(objective, optimizer, schedule)
    train_epoch = step_lib.make_train_epoch(
        train_step,
        preprocessing,
        num_train_examples,
        config.training.batch_size,
        batch_sharding=batch_sharding,
    )
    return Trainer(vae, optimizer, schedule, train_step, train_epoch, steps_per_epoch, total_steps)
