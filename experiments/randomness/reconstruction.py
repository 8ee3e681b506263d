"""The cost of sampling x-hat ~ p(x|z) before the loss.

The ELBO's reconstruction term is log p(x|z), the log-likelihood of the *data* under the
decoder's distribution, in closed form. A "reconstruction" that first samples x-hat from
p(x|z) and then scores it against x estimates something else:

* squared error ``||x - x_hat||^2`` has expectation ``||x - E[x|z]||^2 + sum Var(x|z)``;
* cross-entropy against a sampled binary x-hat (clipped to [eps, 1-eps]) has expectation
  ``#agreeing pixels * log(1-eps) + #disagreeing pixels * log(eps)`` (in expectation),
  a scaled count of mismatches;
* the exact-match indicator ``1[x_hat == x]`` is unbiased for p(x|z) itself (not its log)
  and is 0 for all practical purposes.

And no gradient reaches the decoder through a Bernoulli sample: the pathwise derivative is
0, so learning would need a score-function (REINFORCE) estimator, whose variance is
measured here against the closed-form gradient.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.randomness import estimators
from vae_jax.core import distributions

EPSILON = 1e-3  # clip for the cross-entropy against a sampled binary x-hat


def flat(x):
    return distributions.flatten_event(jnp.asarray(x, jnp.float32), 3)


def squared_error_score(x, x_hat):
    """Negative squared error between the data and a sampled reconstruction."""
    return -jnp.sum(jnp.square(flat(x) - flat(x_hat)), axis=-1)


def squared_error_expectation(x, p):
    """Exact E_{x_hat ~ p}[-||x - x_hat||^2] = -(||x - mean||^2 + sum variance)."""
    return -jnp.sum(jnp.square(flat(x) - flat(p.mean())) + flat(p.variance()), axis=-1)


def cross_entropy_score(x, x_hat, eps=EPSILON):
    """Binary cross-entropy of the data against a sampled x-hat clipped to [eps, 1-eps]."""
    x_hat = jnp.clip(flat(x_hat), eps, 1 - eps)
    x = flat(x)
    return jnp.sum(x * jnp.log(x_hat) + (1 - x) * jnp.log1p(-x_hat), axis=-1)


def cross_entropy_expectation(x, p, eps=EPSILON):
    """Exact E_{x_hat ~ Bernoulli}[cross_entropy_score]: agreement probability per pixel
    times log(1-eps) plus disagreement probability times log(eps)."""
    x, probs = flat(x), flat(p.mean())
    agree = x * probs + (1 - x) * (1 - probs)
    return jnp.sum(agree * jnp.log1p(-eps) + (1 - agree) * jnp.log(eps), axis=-1)


@functools.partial(jax.jit, static_argnums=(0, 4))
def compare_terms(vae, params, key, x, num_draws: int):
    """Closed-form log p(x|z) vs the sampled-x-hat scores, at one z ~ q(z|x) per image."""
    latent_key, observation_key = jax.random.split(key)
    z = vae.reparameterize(latent_key, vae.encode(params, x), 1)[0]
    p = vae.decode(params, z)
    x_hats = jax.vmap(p.sample)(jax.random.split(observation_key, num_draws))
    binary = vae.likelihood == "bernoulli"
    results = {
        "closed_form_log_likelihood": p.log_prob(x),
        "squared_error_exact": squared_error_expectation(x, p),
        "squared_error_sampled": jnp.mean(jax.vmap(lambda s: squared_error_score(x, s))(x_hats), 0),
        "exact_match_fraction": jnp.mean(
            jax.vmap(lambda s: jnp.all(flat(s) == flat(x), axis=-1))(x_hats), 0
        ),
    }
    if binary:
        results["cross_entropy_exact"] = cross_entropy_expectation(x, p)
        results["cross_entropy_sampled"] = jnp.mean(
            jax.vmap(lambda s: cross_entropy_score(x, s))(x_hats), 0
        )
    return results


def _with_decoder(params, decoder_params):
    return {"encoder": params["encoder"], "decoder": decoder_params}


def _pathwise_sampled(vae, key, params, x, z):
    """Gradient of the sampled score through x_hat ~ p(x|z): always exactly 0."""

    def loss(decoder_params):
        x_hat = vae.decode(_with_decoder(params, decoder_params), z).sample(key)
        return jnp.mean(squared_error_score(x, x_hat))

    return jax.grad(loss)(params["decoder"])


def _score_function_sampled(vae, key, params, x, z):
    """REINFORCE for the sampled score: score(x, x_hat) * grad log p(x_hat | z)."""
    x_hat = jax.lax.stop_gradient(vae.decode(params, z).sample(key))
    score = squared_error_score(x, x_hat)

    def surrogate(decoder_params):
        log_p = vae.decode(_with_decoder(params, decoder_params), z).log_prob(x_hat)
        return jnp.mean(score * log_p)

    return jax.grad(surrogate)(params["decoder"])


@functools.partial(jax.jit, static_argnums=0)
def _exact_sampled_objective_gradient(vae, params, x, z):
    """Gradient of the exact E[score] (what the score-function estimator is unbiased for)."""

    def objective(decoder_params):
        p = vae.decode(_with_decoder(params, decoder_params), z)
        return jnp.mean(squared_error_expectation(x, p))

    return jax.grad(objective)(params["decoder"])


def _closed_form(vae, key, params, x):
    """The ELBO's reconstruction term: grad log p(x|z), with its own z ~ q(z|x)."""
    z = vae.reparameterize(key, vae.encode(params, x), 1)[0]

    def objective(decoder_params):
        return jnp.mean(vae.decode(_with_decoder(params, decoder_params), z).log_prob(x))

    return jax.grad(objective)(params["decoder"])


def _three_estimators(vae, key, params, x, z):
    """The pathwise and score-function gradients of the sampled score (z fixed) and the
    closed form's (its own z), at one key."""
    return (
        _pathwise_sampled(vae, key, params, x, z),
        _score_function_sampled(vae, key, params, x, z),
        _closed_form(vae, key, params, x),
    )


def gradients(vae, params, key, x, num_keys: int) -> dict:
    """Decoder-gradient statistics over ``num_keys`` keys of the sampled-x-hat estimators
    (z fixed at the posterior mean: noise from x_hat only) and of the closed form."""
    z = vae.encode(params, x).loc
    keys = jax.random.split(key, num_keys)
    # The three estimators in one program (one compilation), each with its own moments.
    means, variances = estimators.moments_over_keys(
        functools.partial(_three_estimators, vae), keys, params, x, z
    )
    (pathwise_mean, sf_mean, cf_mean), (pathwise_variance, sf_variance, cf_variance) = (
        means,
        variances,
    )
    exact = _exact_sampled_objective_gradient(vae, params, x, z)
    pathwise_leaves = jax.tree.leaves(pathwise_mean) + jax.tree.leaves(pathwise_variance)
    return {
        "num_keys": num_keys,
        "pathwise_through_sample_max_abs": float(max(np.max(np.abs(a)) for a in pathwise_leaves)),
        "score_function_sampled_score": estimators.gradient_noise_summary(sf_mean, sf_variance),
        "score_function_relative_error_of_mean": estimators.norm_of_difference(sf_mean, exact),
        "score_function_relative_error_expected_from_noise": estimators.relative_noise_of_mean(
            [sf_variance], exact, num_keys
        ),
        "closed_form_log_likelihood": estimators.gradient_noise_summary(cf_mean, cf_variance),
        "note": (
            "score-function: z fixed at the posterior mean, noise from x_hat only; "
            "closed form: noise from z ~ q(z|x) only (log p(x|z) has no x_hat to sample)"
        ),
    }


def measure(vae, params, key, x, *, num_draws: int, num_keys: int) -> dict:
    """Closed form vs sampled-x-hat terms (gap per image) and their gradients."""
    terms_key, gradient_key = jax.random.split(key)
    terms = {
        k: np.asarray(v, np.float64)
        for k, v in compare_terms(vae, params, terms_key, x, num_draws).items()
    }
    closed = terms["closed_form_log_likelihood"]
    summary = {
        "num_images": int(x.shape[0]),
        "num_x_hat_draws": num_draws,
        "closed_form_log_likelihood": float(closed.mean()),
        "squared_error_exact_expectation": float(terms["squared_error_exact"].mean()),
        "squared_error_sampled_estimate": float(terms["squared_error_sampled"].mean()),
        "gap_squared_error_minus_log_likelihood": float(
            (terms["squared_error_exact"] - closed).mean()
        ),
        "exact_match_fraction": float(terms["exact_match_fraction"].mean()),
        "log_p_x_given_z_mean": float(closed.mean()),
    }
    if "cross_entropy_exact" in terms:
        summary.update(
            {
                "cross_entropy_eps": EPSILON,
                "cross_entropy_exact_expectation": float(terms["cross_entropy_exact"].mean()),
                "cross_entropy_sampled_estimate": float(terms["cross_entropy_sampled"].mean()),
                "gap_cross_entropy_minus_log_likelihood": float(
                    (terms["cross_entropy_exact"] - closed).mean()
                ),
            }
        )
    summary["gradients"] = gradients(vae, params, gradient_key, x, num_keys)
    return summary
