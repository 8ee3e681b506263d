"""The evaluators of a trained model, as plug-ins (big_vision's ``evaluators/``).

Each is built from keyword arguments (the model, the test images and its own settings,
never a config) and its ``run(params, key, ...)`` returns its part of the report, spelled
by ``vae_jax.evaluation.report_schema``. ``Evaluator`` (``evaluate_run``) builds them from
a config in one place and runs them in order; validation during training is
``vae_jax.evaluation.validation.make_validation``, of the same kind.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from absl import logging

from vae_jax import model
from vae_jax.data import batching
from vae_jax.evaluation import bounds, diagnostics, figures, per_example, report_schema
from vae_jax.model import hierarchy


class TestNLL:
    """``test_nll``: the importance-weighted bound with K draws per test image (Burda et
    al., 2015), compiled once; ``compile`` lets a caller time the compilation apart."""

    def __init__(
        self,
        *,
        vae,
        preprocessing,
        images,
        image_shape,
        num_importance_samples,
        chunk_size,
        batch_size,
    ):
        self.vae, self.images, self.image_shape, self.batch = vae, images, image_shape, batch_size
        self._bound = bounds.make_iwae_evaluator(
            vae, preprocessing, num_samples=num_importance_samples, chunk_size=chunk_size
        )
        self.compiled = False

    def compile(self, params, key) -> None:
        """Compiles the batch evaluator ahead of its first batch (the jitted function then
        finds the executable in JAX's compilation cache)."""
        indices = np.asarray(batching.ordered_batches(1, self.batch).indices[0])
        self._bound.lower(params, key, self.images, indices).compile()
        self.compiled = True

    def run(self, params, key, *, on_batch=None) -> dict:
        iwae = per_example.evaluate_examples(
            self._bound, params, key, self.images, self.batch, on_batch=on_batch
        )
        return report_schema.nll_section(
            iwae, likelihood=self.vae.likelihood, image_shape=self.image_shape
        )


class TestELBO:
    """``test_elbo``: the ELBO with ``num_samples`` draws per test image, and each image's
    KL per latent dimension (for the per-layer summaries)."""

    def __init__(self, *, vae, preprocessing, images, num_samples, batch_size):
        self.vae, self.images, self.batch, self.num_samples = vae, images, batch_size, num_samples
        self._elbo = bounds.make_elbo_evaluator(vae, preprocessing, num_samples=num_samples)

    def run(self, params, key) -> tuple[dict, np.ndarray]:
        """The section and the per-example KL per dimension."""
        elbo = per_example.evaluate_examples(self._elbo, params, key, self.images, self.batch)
        section = report_schema.elbo_section(
            elbo, num_samples=self.num_samples, kl_estimator=model.evaluation_kl(self.vae)
        )
        return section, elbo["kl_per_dim"]


class LatentDiagnostics:
    """``latent`` and ``layers``: active units, KL per dimension against N(0, 1) and the
    mutual information I(x;z) of q(z|x) on the test images; per layer of a hierarchy its
    active units and test KL."""

    def __init__(self, *, vae, preprocessing, images, batch_size):
        self.vae, self.preprocessing, self.images, self.batch = (
            vae, preprocessing, images, batch_size
        )  # fmt: skip

    def run(self, params, key, *, kl_per_dim) -> tuple[dict, list | None]:
        """``(latent, layers)``; ``kl_per_dim``: the test ELBO's, per example."""
        vae = self.vae
        means, log_scales = diagnostics.posterior_parameters(
            vae, params, self.images, self.preprocessing, self.batch
        )
        activity, active = diagnostics.active_units(means)
        mutual_information = diagnostics.mutual_information(key, means, log_scales)
        analytic = model.evaluation_kl(vae) == "analytic"
        latent = report_schema.latent_section(
            dimensions=vae.latent_dim,
            active=active,
            activity=activity,
            kl_per_dim=(
                diagnostics.kl_per_dimension(means, log_scales).tolist() if analytic else None
            ),
            posterior_described=vae.posterior_described,
            mutual_information=mutual_information,
            num_examples=len(self.images),
        )
        return latent, self._layers(active, kl_per_dim)

    def _layers(self, active: np.ndarray, kl_per_dim: np.ndarray) -> list | None:
        """Per stochastic layer (``z_1`` first); None for one layer."""
        sizes = self.vae.latent_layers
        if len(sizes) == 1:
            return None
        layer_active = hierarchy.layer_sums(active.astype(np.int64), sizes)
        layer_kl = hierarchy.layer_sums(np.asarray(kl_per_dim, np.float64), sizes)
        return report_schema.layer_entries(sizes, layer_active, layer_kl)


class Figures:
    """The figures: reconstructions, generations, training curves, an interpolation and,
    for a 2-d single-layer latent, the manifold and the test set's posterior means."""

    def __init__(self, *, vae, preprocessing, images, labels, num_examples, num_bins, batch_size):
        self.vae, self.preprocessing, self.images, self.labels = (
            vae, preprocessing, images, labels
        )  # fmt: skip
        self.num_examples, self.num_bins, self.batch = num_examples, num_bins, batch_size

    def run(self, params, key, *, records: list[dict], folder: Path) -> list[str]:
        """The paths of the figures written in ``folder``; ``records``: the run's metrics."""
        vae, preprocessing, images, num_bins = (
            self.vae, self.preprocessing, self.images, self.num_bins
        )  # fmt: skip
        keys = jax.random.split(key, 2)
        count = min(self.num_examples, len(images))
        x = preprocessing.eval_input(images[:count])
        paths = [
            figures.reconstructions(vae, params, keys[0], x, folder / "reconstructions.png",
                                    num_bins=num_bins),
            figures.generations(vae, params, keys[1], folder / "generations.png",
                                num_bins=num_bins),
            figures.training_curves(records, folder / "training_curves.png"),
        ]  # fmt: skip
        if len(images) >= 2:
            x_pair = preprocessing.eval_input(images[:2])
            paths.append(figures.interpolation(vae, params, x_pair, folder / "interpolation.png",
                                               num_bins=num_bins))  # fmt: skip
        if vae.latent_dim == 2 and len(vae.latent_layers) == 1:
            means, _ = diagnostics.posterior_parameters(
                vae, params, images, preprocessing, self.batch
            )
            paths.append(figures.latent_manifold(vae, params, folder / "latent_manifold.png",
                                                 num_bins=num_bins))  # fmt: skip
            paths.append(figures.latent_scatter(means, np.asarray(self.labels),
                                                folder / "latent_scatter.png"))  # fmt: skip
        logging.info("figures in %s", folder)
        return [str(p) for p in paths]
