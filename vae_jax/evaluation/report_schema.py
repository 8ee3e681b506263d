"""The schema of ``report.json``'s ``"evaluation"``: every key and its nesting, in order.

The evaluators (``vae_jax.evaluation.evaluators``) return numbers; this module alone
spells the sections they go into, so the report's layout is read and changed in one
place. The order of the keys is the order in which they are written (and read by
``report_files``): checkpoint, settings and keys, test NLL, test ELBO, latent diagnostics,
per-layer summaries, data, any added sections (AIS, BDMC), figures, seconds, timings.
"""

from __future__ import annotations

import numpy as np

from vae_jax.core import rng
from vae_jax.evaluation import bounds, diagnostics

# Likelihoods whose log-likelihood is a log-probability of discrete data (bits/dim apply).
DISCRETE_LIKELIHOODS = ("bernoulli", "discretized_logistic")

KEY_DERIVATION = "fold_in(fold_in(eval_stream, purpose_id), example_index)"


def checkpoint_part(*, step: int, epoch: int) -> dict:
    """``{"checkpoint": ...}``: which state was evaluated (first in the section)."""
    return {"checkpoint": {"step": int(step), "epoch": int(epoch)}}


def measured_part(
    *,
    num_examples: int,
    compute_dtype: str,
    num_importance_samples: int,
    importance_chunk_size: int,
    seed: int,
    purposes,
    test_nll: dict,
    test_elbo: dict,
    latent: dict,
    layers: list | None,
    data: dict,
) -> dict:
    """What ``Evaluator.evaluate`` returns: the settings, the keys' derivation and the
    evaluators' parts, under their report keys."""
    return {
        "split": "test",
        "num_examples": num_examples,
        "compute_dtype": compute_dtype,
        "num_importance_samples": num_importance_samples,
        "importance_chunk_size": importance_chunk_size,
        "keys": {
            "seed": int(seed),
            "derivation": KEY_DERIVATION,
            "purpose_ids": {p: rng.EVAL_PURPOSE_IDS[p] for p in purposes},
        },
        "test_nll": test_nll,
        "test_elbo": test_elbo,
        "latent": latent,
        "layers": layers,
        "data": data,
    }


def closing_part(*, figures: list[str] | None, seconds: float, timings: dict) -> dict:
    """The last keys: the figures' paths (when made), the evaluation's seconds and each
    phase's."""
    part = {} if figures is None else {"figures": figures}
    return {**part, "seconds": seconds, "timings_seconds": dict(timings)}


def data_part(dataset) -> dict:
    """Which test set: name, protocol and fingerprint."""
    return {
        "dataset": dataset.name,
        "protocol": dataset.record["protocol"],
        "fingerprint_sha256": dataset.record["fingerprint_sha256"],
    }


def nll_section(iwae: np.ndarray, *, likelihood: str, image_shape) -> dict:
    """``test_nll``: minus the mean importance-weighted bound, its standard error and,
    for discrete data, bits per dimension."""
    bound, standard_error = bounds.mean_and_standard_error(iwae)
    summary = {
        "nats": -bound,
        "standard_error": standard_error,
        "estimator": "importance-weighted bound (Burda et al. 2015), an upper bound on -log p(x)",
    }
    if likelihood in DISCRETE_LIKELIHOODS:
        summary["bits_per_dim"] = bounds.bits_per_dim(-bound, int(np.prod(image_shape)))
    return summary


def elbo_section(elbo: dict, *, num_samples: int, kl_estimator: str) -> dict:
    """``test_elbo``: the mean ELBO, its standard error and its two terms."""
    value, standard_error = bounds.mean_and_standard_error(elbo["elbo"])
    return {
        "elbo": value,
        "standard_error": standard_error,
        "log_likelihood": float(np.mean(elbo["log_likelihood"], dtype=np.float64)),
        "kl": float(np.mean(elbo["kl"], dtype=np.float64)),
        "num_samples": int(num_samples),
        "kl_estimator": kl_estimator,
    }


def latent_section(
    *,
    dimensions: int,
    active: np.ndarray,
    activity: np.ndarray,
    kl_per_dim: list | None,
    posterior_described: str,
    mutual_information: float,
    num_examples: int,
) -> dict:
    """``latent``: active units, KL per dimension and the mutual information I(x;z)."""
    return {
        "dimensions": dimensions,
        "active_units": int(active.sum()),
        "activity_threshold": diagnostics.ACTIVITY_THRESHOLD,
        "activity": activity.tolist(),
        # Against N(0, 1); a learned prior or a flow has no KL per dimension.
        "kl_per_dim": kl_per_dim,
        # Active units and I(x;z) describe this Gaussian.
        "posterior_described": posterior_described,
        "mutual_information_nats": mutual_information,
        "mutual_information_upper_bound_log_n": float(np.log(num_examples)),
        # At its ceiling: the number measures the test set's size, not the code.
        "mutual_information_saturated": diagnostics.mutual_information_saturated(
            mutual_information, num_examples
        ),
        "mutual_information_saturated_rule": (
            f"log N - I < {diagnostics.SATURATION_GAP_NATS:g} nats"
        ),
    }


def layer_entries(sizes, active_units, kls) -> list[dict]:
    """``layers``: per stochastic layer (``z_1`` first), its size, active units and KL."""
    return [
        {
            "layer": i + 1,
            "dimensions": size,
            "active_units": int(count),
            "kl": float(np.mean(kl, dtype=np.float64)),
        }
        for i, (size, count, kl) in enumerate(zip(sizes, active_units, kls, strict=True))
    ]
