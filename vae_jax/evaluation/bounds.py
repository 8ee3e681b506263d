"""Test log-likelihood (importance-weighted bound) and ELBO over a whole split.

Every example ``i`` is evaluated with its own key ``fold_in(purpose_key, i)``, so the keys
do not depend on batch size, padding or chunking: results agree across them up to float32
rounding (a few ulps), and re-evaluating with the same sizes gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np

from vae_jax import model
from vae_jax.evaluation import per_example


def mean_and_standard_error(values: np.ndarray) -> tuple[float, float]:
    """Mean over examples and its standard error (std / sqrt(n), with ddof=1)."""
    values = np.asarray(values, np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def make_iwae_evaluator(vae, preprocessing, *, num_samples: int, chunk_size: int):
    """Compiled per-batch evaluator of ``log (1/K) sum_k p(x, z_k) / q(z_k | x)`` (Burda
    et al., 2015); memory is bounded by ``batch_size * chunk_size`` draws whatever K is."""
    return per_example.make_batch_evaluator(
        lambda p, k, x: vae.iwae_bound(p, k, x, num_samples=num_samples, chunk_size=chunk_size),
        preprocessing,
    )


def make_elbo_evaluator(vae, preprocessing, *, num_samples: int, kl: str | None = None):
    """Compiled per-batch evaluator of the ELBO's terms (and KL per latent dimension); the
    KL in closed form where the prior has one (``model.evaluation_kl``) unless ``kl``."""
    kl = model.evaluation_kl(vae) if kl is None else kl
    return per_example.make_batch_evaluator(
        lambda p, k, x: vae.elbo(p, k, x, num_samples=num_samples, kl=kl)._asdict(), preprocessing
    )


def importance_weighted_bounds(
    vae,
    params,
    key: jax.Array,
    images: jax.Array,
    preprocessing,
    *,
    num_samples: int,
    chunk_size: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Per-example importance-weighted bounds over ``images`` (see ``make_iwae_evaluator``)."""
    evaluator = make_iwae_evaluator(
        vae, preprocessing, num_samples=num_samples, chunk_size=chunk_size
    )
    return per_example.evaluate_examples(
        evaluator, params, key, images, batch_size, on_batch=on_batch
    )


def elbo_terms(
    vae,
    params,
    key,
    images,
    preprocessing,
    *,
    num_samples: int,
    batch_size: int,
    kl: str | None = None,
) -> dict[str, np.ndarray]:
    """Per-example ELBO, log-likelihood and KL, and KL per latent dimension."""
    evaluator = make_elbo_evaluator(vae, preprocessing, num_samples=num_samples, kl=kl)
    return per_example.evaluate_examples(evaluator, params, key, images, batch_size)


def bits_per_dim(nll_nats: float, num_dims: int) -> float:
    """Negative log-likelihood in bits per data dimension."""
    return nll_nats / (num_dims * math.log(2.0))
