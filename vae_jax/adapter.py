"""The one place that reads a config and builds the core from it.

The core (model, objectives, optimizers) takes keyword arguments named like the fields of
``config.model``, ``config.objective`` and ``config.optimizer``; these functions pass the
fields on. Everything else in the library gets built objects, not the config.
"""

from __future__ import annotations

import optax

from vae_jax import hyperparameters, model, objectives, optimizers
from vae_jax.data import batching, catalog

# Fields of config.optimizer that shape the learning-rate schedule rather than the update.
SCHEDULE_FIELDS = ("learning_rate", "schedule", "warmup_steps", "final_learning_rate_ratio")


def vae_from_config(config, image_shape: tuple[int, int, int] | None = None) -> model.VAE:
    """``make_vae(**config.model)``; the image shape is that of the dataset ``config.data``
    names unless given."""
    if image_shape is None:
        image_shape = catalog.image_shape(config.data)
    return model.make_vae(image_shape=image_shape, **config.model)


def evaluation_vae_from_config(config, image_shape: tuple[int, int, int]) -> model.VAE:
    """The model of ``config.model`` computing in ``config.evaluation.compute_dtype``: the
    test bounds may use another precision than training (same parameters)."""
    fields = {**config.model, "compute_dtype": config.evaluation.compute_dtype}
    return model.make_vae(image_shape=image_shape, **fields)


def evaluator_options(config) -> dict:
    """The settings ``evaluate_run.Evaluator`` takes besides the model, the data and the
    flags' K, chunk and batch: its ELBO draws, figure examples, the likelihood's bins and
    the evaluation precision's name, as the run's config gives them."""
    return {
        "num_elbo_samples": config.evaluation.num_elbo_samples,
        "num_figure_examples": config.evaluation.num_figure_examples,
        "num_bins": config.model.num_bins,
        "compute_dtype": config.evaluation.compute_dtype,
    }


def objective_from_config(
    vae: model.VAE, config, traced: dict | None = None, num_train_examples: int = 0
):
    """``make_objective(vae, **config.objective)``, the fields in ``traced`` (traced
    scalars by field name, ``vae_jax.hyperparameters``) taken from there, with the
    config's switches said explicitly; an epoch's steps from ``num_train_examples`` (for a
    KL warm-up counted in epochs)."""
    fields = {**config.objective}
    if traced is not None:
        fields.update(hyperparameters.group_fields(traced, "objective"))
        fields["switched_on"] = _group_names(hyperparameters.switched_on(config), "objective")
    steps_per_epoch = batching.num_batches(num_train_examples, config.training.batch_size)
    return objectives.make_objective(vae, steps_per_epoch=steps_per_epoch, **fields)


def _group_names(fields, group: str) -> frozenset[str]:
    """``{"free_bits", ...}`` of the ``{"objective.free_bits", ...}`` in one group."""
    return frozenset(name.split(".")[1] for name in fields if name.split(".")[0] == group)


def total_steps(config, num_train_examples: int) -> int:
    """Optimizer steps of the whole run: the length of the learning-rate schedule."""
    steps_per_epoch = batching.num_batches(num_train_examples, config.training.batch_size)
    return steps_per_epoch * config.training.num_epochs


def optimizer_from_config(
    config, total_steps: int, traced: dict | None = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer of ``config.optimizer`` and its learning-rate schedule (built once,
    shared by the update and the reported learning rate); the fields in ``traced`` taken
    from there. Clipping that is off (``grad_clip_norm`` 0) is left out of the program."""
    fields = {**config.optimizer, **hyperparameters.group_fields(traced or {}, "optimizer")}
    if "optimizer.grad_clip_norm" not in hyperparameters.switched_on(config):
        fields["grad_clip_norm"] = None
    schedule = optimizers.learning_rate_schedule(
        total_steps=total_steps, **{name: fields.pop(name) for name in SCHEDULE_FIELDS}
    )
    return optimizers.make_optimizer(schedule, **fields), schedule
