"""Where the training noise comes from: the spread, across keys, of the ELBO estimate and
of its gradient, with the analytic or the Monte Carlo KL and 1, 4, 16, 64 latent draws;
and reparameterization against score-function gradients for the encoder."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.randomness import estimators

SAMPLE_COUNTS = (1, 4, 16, 64)


def _elbo_and_gradient(vae, num_samples, kl, key, params, x):
    """The batch-mean ELBO estimate at one key, and its gradient."""
    value, gradient = jax.value_and_grad(
        lambda p: jnp.mean(vae.elbo(p, key, x, num_samples=num_samples, kl=kl).elbo)
    )(params)
    return {"elbo": value, "gradient": gradient}


def _elbo_and_gradient_per_kl(vae, num_samples, key, params, x):
    """``_elbo_and_gradient`` with either KL estimator, ``{"analytic": ..., "mc": ...}``."""
    return {
        kl: _elbo_and_gradient(vae, num_samples, kl, key, params, x) for kl in ("analytic", "mc")
    }


def elbo_noise(vae, params, key, x, *, num_keys: int, sample_counts=SAMPLE_COUNTS) -> list[dict]:
    """Per (latent draws, KL estimator): mean and variance of the batch-mean ELBO estimate
    and the mean per-parameter variance of its gradient, over ``num_keys`` keys."""
    keys = jax.random.split(key, num_keys)
    rows = []
    for num_samples in sample_counts:
        # Both KL estimators in one program (one compilation): the same keys, so the same
        # draws, and each estimator's moments are those it has on its own.
        means, variances = estimators.moments_over_keys(
            functools.partial(_elbo_and_gradient_per_kl, vae, num_samples), keys, params, x
        )
        for kl in ("analytic", "mc"):
            mean, variance = means[kl], variances[kl]
            elbo_variance = float(variance["elbo"])
            rows.append(
                {
                    "num_samples": num_samples,
                    "kl": kl,
                    "elbo_mean": float(mean["elbo"]),
                    "elbo_standard_error": float(np.sqrt(elbo_variance / num_keys)),
                    "elbo_variance": elbo_variance,
                    "gradient": estimators.gradient_noise_summary(
                        mean["gradient"], variance["gradient"]
                    ),
                }
            )
    return rows


def _with_encoder(params, encoder_params):
    return {"encoder": encoder_params, "decoder": params["decoder"]}


def _reparameterized(vae, key, params, x):
    def objective(encoder_params):
        q = vae.encode(_with_encoder(params, encoder_params), x)
        z = vae.reparameterize(key, q, 1)[0]
        return jnp.mean(vae.decode(params, z).log_prob(x))

    return jax.grad(objective)(params["encoder"])


def _score_function(vae, key, params, x):
    q = vae.encode(params, x)
    z = jax.lax.stop_gradient(vae.reparameterize(key, q, 1)[0])
    reward = jax.lax.stop_gradient(vae.decode(params, z).log_prob(x))

    def surrogate(encoder_params):
        return jnp.mean(reward * vae.encode(_with_encoder(params, encoder_params), x).log_prob(z))

    return jax.grad(surrogate)(params["encoder"])


def _both_encoder_gradients(vae, key, params, x):
    return _reparameterized(vae, key, params, x), _score_function(vae, key, params, x)


def encoder_gradients(vae, params, key, x, *, num_keys: int) -> dict:
    """Gradient of E_q[log p(x|z)] w.r.t. the encoder: reparameterization (through
    z = loc + scale * eps) against the score function (log p(x|z) * grad log q(z|x))."""
    keys = jax.random.split(key, num_keys)
    # Both estimators in one program (one compilation), each with its moments on its own.
    (rp_mean, sf_mean), (rp_variance, sf_variance) = estimators.moments_over_keys(
        functools.partial(_both_encoder_gradients, vae), keys, params, x
    )
    reparam = estimators.gradient_noise_summary(rp_mean, rp_variance)
    score = estimators.gradient_noise_summary(sf_mean, sf_variance)
    return {
        "num_keys": num_keys,
        "objective": "E_q[log p(x|z)] (the KL part has an exact gradient in both cases)",
        "reparameterization": reparam,
        "score_function": score,
        "variance_ratio_score_function_over_reparameterization": (
            score["mean_variance_per_parameter"] / reparam["mean_variance_per_parameter"]
        ),
        "relative_difference_of_means": estimators.norm_of_difference(sf_mean, rp_mean),
        "relative_difference_expected_from_noise": estimators.relative_noise_of_mean(
            [sf_variance, rp_variance], rp_mean, num_keys
        ),
    }
