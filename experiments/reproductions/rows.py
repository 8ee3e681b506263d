"""The rows of the reproduced table: each a config under experiments/configs/reproduce/
whose module names its published number (``PUBLISHED = (mean, plus_minus)``)."""

from __future__ import annotations

import importlib
from typing import NamedTuple

SOURCE = (
    'Norouzi, Fleet & Norouzi, "Exemplar VAE: Linking Generative Models, Nearest '
    'Neighbor Retrieval, and Data Augmentation", NeurIPS 2020, Table 1 (density '
    "estimation), Fashion-MNIST column: test NLL in nats by importance sampling with 5,000 "
    "samples; ± over runs"
)
# The protocol's own bounds: at most this many epochs, and the test NLL's samples.
PROTOCOL_EPOCHS = 2000
PROTOCOL_SAMPLES = 5000
PROTOCOL_TEST_IMAGES = 10_000
PROTOCOL_TRAIN_IMAGES = 50_000


class Row(NamedTuple):
    name: str  # the config module under experiments/configs/reproduce/
    label: str

    @property
    def module(self):
        return importlib.import_module(f"experiments.configs.reproduce.{self.name}")

    @property
    def config_path(self) -> str:
        return f"experiments/configs/reproduce/{self.name}.py"

    @property
    def published(self) -> tuple[float, float] | None:
        """``(mean, plus_minus)``, or None where the config does not name it."""
        value = self.module.PUBLISHED
        return None if value is None else tuple(value)

    def config(self):
        return self.module.get_config()


ROWS = (
    Row("fashion_vae", "VAE, Gaussian prior"),
    Row("fashion_vampprior", "VAE, VampPrior"),
    Row("fashion_hvae", "HVAE, Gaussian prior"),
    Row("fashion_hvae_vampprior", "HVAE, VampPrior"),
    Row("fashion_convhvae", "ConvHVAE, Gaussian prior"),
    Row("fashion_convhvae_vampprior", "ConvHVAE, VampPrior"),
)
# The MNIST column: configs for machines with internet and an accelerator (not run here).
MNIST_ROWS = tuple(
    Row(row.name.replace("fashion_", "mnist_"), row.label + " (MNIST)") for row in ROWS
)
BY_NAME = {row.name: row for row in (*ROWS, *MNIST_ROWS)}
