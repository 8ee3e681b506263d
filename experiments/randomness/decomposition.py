"""Where the variance of a generated x comes from: the law of total variance per pixel,

    Var(x) = E_z[Var(x | z)] + Var_z(E[x | z]),

the first part the decoder's observation noise (sampling x ~ p(x|z)), the second the
latent draw. Both sides are estimated from the same draws (z_s, x_s), s = 1..S, with
unbiased estimators (sample variances with ddof=1), so their difference has mean zero; its
standard error comes from batch means over disjoint groups of draws.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

NUM_BATCHES = 20  # groups of draws for the standard error of the residual


DRAWS_PER_BATCH = 100  # draws computed at once (bounds memory for exact DL moments)


def _draw_all(vae, params, keys, z_of_key):
    def one(k):
        latent_key, observation_key = jax.random.split(k)
        z = z_of_key(latent_key)
        p = vae.decode(params, z)
        return z, p.mean(), p.variance(), p.sample(observation_key)

    return jax.lax.map(one, keys, batch_size=DRAWS_PER_BATCH)


@functools.partial(jax.jit, static_argnums=0)
def posterior_draws(vae, params, keys, x):
    """(z, E[x|z], Var(x|z), x ~ p(x|z)) for z ~ q(z|x), one tuple per key."""
    q = vae.encode(params, x)
    return _draw_all(vae, params, keys, lambda k: q.sample(k))


@functools.partial(jax.jit, static_argnums=0)
def prior_draws(vae, params, keys):
    """(z, E[x|z], Var(x|z), x ~ p(x|z)) for z ~ p(z), one tuple per key."""
    return _draw_all(vae, params, keys, vae.prior(params).sample)


def _parts(means: np.ndarray, variances: np.ndarray, samples: np.ndarray):
    """Per-pixel (total, within, between) from draws along axis 0."""
    total = samples.var(axis=0, ddof=1)
    within = variances.mean(axis=0)
    between = means.var(axis=0, ddof=1)
    return total, within, between


def decompose(means, variances, samples) -> dict:
    """Sums over pixels of the three variances, the residual and its standard error."""
    means, variances, samples = (np.asarray(a, np.float64) for a in (means, variances, samples))
    total, within, between = _parts(means, variances, samples)
    groups = np.array_split(np.arange(len(samples)), NUM_BATCHES)
    residuals = []
    for g in groups:
        t, w, b = _parts(means[g], variances[g], samples[g])
        residuals.append(t.sum() - w.sum() - b.sum())
    residual = float(total.sum() - within.sum() - between.sum())
    return {
        "total_variance": float(total.sum()),
        "observation_noise_E_var_x_given_z": float(within.sum()),
        "latent_draw_var_E_x_given_z": float(between.sum()),
        "fraction_from_observation_noise": float(within.sum() / total.sum()),
        "fraction_from_latent_draw": float(between.sum() / total.sum()),
        "residual_total_minus_parts": residual,
        "residual_standard_error": float(np.std(residuals, ddof=1) / np.sqrt(len(residuals))),
        "residual_in_standard_errors": float(
            residual / (np.std(residuals, ddof=1) / np.sqrt(len(residuals)) + 1e-300)
        ),
        "per_pixel": {"total": total, "within": within, "between": between},
    }


def posterior_decomposition(vae, params, key, x, num_draws: int) -> dict:
    """For each image x: z ~ q(z|x), then x-hat ~ p(x|z); also the spread of z itself."""
    results = []
    for i, key_i in enumerate(jax.random.split(key, x.shape[0])):
        z, means, variances, samples = posterior_draws(
            vae, params, jax.random.split(key_i, num_draws), x[i]
        )
        result = decompose(means, variances, samples)
        result["z_sample_variance"] = np.asarray(z, np.float64).var(axis=0, ddof=1).tolist()
        q = vae.encode(params, x[i])
        result["z_posterior_variance"] = np.asarray(q.variance(), np.float64).tolist()
        results.append(result)
    return _average(results)


def prior_decomposition(vae, params, key, num_draws: int) -> dict:
    """z ~ p(z), then x ~ p(x|z): generation from the prior."""
    _, means, variances, samples = prior_draws(vae, params, jax.random.split(key, num_draws))
    return _average([decompose(means, variances, samples)])


def _average(results: list[dict]) -> dict:
    """Averages over images; keeps every image's residual check."""
    scalar_keys = [k for k, v in results[0].items() if isinstance(v, float)]
    summary = {k: float(np.mean([r[k] for r in results])) for k in scalar_keys}
    vector_keys = [k for k in ("z_sample_variance", "z_posterior_variance") if k in results[0]]
    summary["per_image"] = [{k: r[k] for k in scalar_keys + vector_keys} for r in results]
    summary["max_abs_residual_in_standard_errors"] = float(
        max(abs(r["residual_in_standard_errors"]) for r in results)
    )
    summary["per_pixel_fraction_from_observation_noise"] = np.mean(
        [r["per_pixel"]["within"] / np.maximum(r["per_pixel"]["total"], 1e-12) for r in results],
        axis=0,
    )
    return summary
