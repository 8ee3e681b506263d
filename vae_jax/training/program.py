"""``build_program``: the model, its initial state and its compiled epoch, built once.

Single runs, sweeps, grids and the benchmark scripts all train through it. The model, the
switches (``vae_jax.hyperparameters.switched_on``) and every shape are fixed when the
program is built; the hyperparameters that change no shape are one pytree
(``hyperparameters.traced_values``) that the epoch takes at call time. The objective and
the optimizer are made from that pytree where the epoch is traced, as optax's
``inject_hyperparams`` makes its inner transformation from its state in ``update``: runs
that differ only in those values (a grid's cells, seeds) share one compiled program.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from vae_jax import adapter, hyperparameters, model
from vae_jax.data import batching
from vae_jax.data.preprocess import Preprocessing
from vae_jax.train_state import TrainState, create_train_state
from vae_jax.training import fit
from vae_jax.training.trainer import Trainer, trainer_of


@dataclasses.dataclass(frozen=True)
class Program:
    """What training a config needs: ``vae``, ``initial_state(key)``, the pure
    ``train_epoch(state, streams, images, epoch, hyperparameters)`` and ``compile``."""

    config: Any
    vae: model.VAE
    preprocessing: Preprocessing
    num_train_examples: int
    batch_sharding: Any
    optimizer: optax.GradientTransformation  # with the config's numbers: the state's shape
    hyperparameters: dict  # the config's values of the traced fields
    steps_per_epoch: int

    def trainer(self, values: dict | None = None) -> Trainer:
        """The step and the epoch with the hyperparameters ``values`` (traced scalars by
        field name; None: the config's numbers, baked in)."""
        return trainer_of(
            self.config,
            self.vae,
            self.preprocessing,
            self.num_train_examples,
            self.batch_sharding,
            values,
        )

    def initial_state(self, init_key) -> TrainState:
        """Step 0 of a run whose ``init`` stream is ``init_key``."""
        return create_train_state(self.vae, self.optimizer, init_key)

    def train_epoch(self, state, streams, images, epoch, values):
        """One epoch (``lax.scan`` over its steps) with the hyperparameters ``values``."""
        return self.trainer(values).train_epoch(state, streams, images, epoch)

    def compile(self, state, streams, images, values, *, epoch_fn=None):
        """``(program(state, streams, images, epoch), seconds)``: ``epoch_fn`` (default
        ``train_epoch``; a sweep's maps it over a run axis) compiled for these arguments,
        the state donated and ``values`` bound (``fit.compile_epoch``)."""
        return fit.compile_epoch(epoch_fn or self.train_epoch, state, streams, images, values)


def build_program(
    config,
    *,
    image_shape: tuple[int, int, int],
    preprocessing: Preprocessing,
    num_train_examples: int,
    batch_sharding=None,
) -> Program:
    """The program that trains ``config`` on ``num_train_examples`` images of
    ``image_shape`` (``batch_sharding``: optional placement of each batch on a mesh)."""
    vae = adapter.vae_from_config(config, image_shape)
    total_steps = adapter.total_steps(config, num_train_examples)
    optimizer, _ = adapter.optimizer_from_config(config, total_steps)
    return Program(
        config=config,
        vae=vae,
        preprocessing=preprocessing,
        num_train_examples=num_train_examples,
        batch_sharding=batch_sharding,
        optimizer=optimizer,
        hyperparameters=hyperparameters.traced_values(config),
        steps_per_epoch=batching.num_batches(num_train_examples, config.training.batch_size),
    )
