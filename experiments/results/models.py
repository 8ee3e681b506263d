"""The models of the results table: the default experiment (``fashion_mlp.py``: a
784-512-256-20 MLP, Bernoulli likelihood, Adam at 1e-3, batches of 128) with one part
changed each, so that a difference in the table is that part's."""

from __future__ import annotations

from typing import NamedTuple

from vae_jax.errors import ConfigError
from vae_jax.sweep import grid


class Model(NamedTuple):
    name: str  # also its directory under --workdir
    label: str  # as the table shows it
    paper: str
    overrides: dict  # config field -> value


MODELS = (
    Model("vae", "VAE (ELBO, analytic KL)", "Kingma & Welling 2014", {}),
    Model(
        "iwae_5",
        "IWAE, k = 5",
        "Burda et al. 2015",
        {"objective.name": "iwae", "objective.num_samples": 5},
    ),
    Model(
        "iwae_50",
        "IWAE, k = 50",
        "Burda et al. 2015",
        {"objective.name": "iwae", "objective.num_samples": 50},
    ),
    Model(
        "vampprior",
        "VampPrior, 500 pseudo-inputs",
        "Tomczak & Welling 2018",
        {"model.prior": "vampprior", "model.prior_components": 500, "objective.kl": "mc"},
    ),
    Model(
        "iaf",
        "IAF posterior, 2 steps",
        "Kingma et al. 2016",
        {"model.posterior": "iaf", "objective.kl": "mc"},
    ),
    Model(
        "two_layer",
        "two stochastic layers, 20 + 10 (bottom-up)",
        "Burda et al. 2015",
        {
            "model.upper_latent_dims": (10,),
            "model.upper_hidden_sizes": (128, 128),
            "objective.kl": "mc",
        },
    ),
)
NAMES = tuple(model.name for model in MODELS)


def select(names: list[str]) -> list[Model]:
    """The models named (all when empty), in the table's order."""
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise ConfigError(f"--models={','.join(unknown)}: unknown; choose from {','.join(NAMES)}")
    return [model for model in MODELS if not names or model.name in names]


def model_config(
    base_config, model: Model, *, epochs: int, train_examples: int = 0, test_examples: int = 0
):
    """The base config with the model's part and the table's shared settings: the number
    of epochs, and how many train and test images (0 = the base config's limits)."""
    values = {**model.overrides, "training.num_epochs": epochs}
    if train_examples:
        values["data.limit_train"] = train_examples
    if test_examples:
        values["data.limit_test"] = test_examples
    return grid.cell_config(base_config, grid.Cell(model.name, values))
