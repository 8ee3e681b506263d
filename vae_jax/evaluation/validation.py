"""The validation ELBO, the evaluator the training loop runs after every epoch.

Keys come from the run's ``eval`` stream (purpose ``validation``), one per example, so
every epoch draws the same latents and validation numbers differ only by the parameters.
"""

from __future__ import annotations

import numpy as np

from vae_jax import model
from vae_jax.core import rng
from vae_jax.evaluation import per_example


def make_validation(vae, dataset, *, num_samples: int, batch_size: int):
    """``validate(params, eval_stream) -> metrics``: the validation ELBO and its terms
    (``{}`` when the dataset has no validation split). Compiled once, for any number of
    runs of the same model.

    Args:
      vae: the model's pure functions.
      dataset: a ``vae_jax.data.Dataset``; its ``validation`` split is evaluated.
      num_samples: latent draws per example.
      batch_size: examples per compiled batch (results do not depend on it).
    """
    if dataset.validation is None:
        return lambda params, eval_stream: {}
    evaluate_batch = per_example.make_batch_evaluator(
        lambda params, key, x: vae.elbo(
            params, key, x, num_samples=num_samples, kl=model.evaluation_kl(vae)
        ),
        dataset.preprocessing,
    )

    def validate(params, eval_stream) -> dict:
        key = rng.eval_key(eval_stream, "validation")
        out = per_example.evaluate_examples(
            evaluate_batch, params, key, dataset.validation.images, batch_size
        )
        return {
            "validation/elbo": float(np.mean(out.elbo, dtype=np.float64)),
            "validation/log_likelihood": float(np.mean(out.log_likelihood, dtype=np.float64)),
            "validation/kl": float(np.mean(out.kl, dtype=np.float64)),
        }

    return validate
