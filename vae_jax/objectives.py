"""The training objective: ELBO (beta, KL warm-up, free bits) or IWAE-k.

``make_objective(vae, name=..., ...)`` returns
``objective(params, key, x, mask, step) -> (loss, metrics)``. The loss is averaged over
the examples where ``mask`` is True (the last batch of an epoch is padded). Metrics always
include the plain ELBO (beta = 1) and its terms, so runs with different objectives can be
compared on the same numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax.model import VAE


def kl_weight(step: jax.Array, *, beta: float, warmup_steps: int) -> jax.Array:
    """The KL weight at ``step`` (from 0): ``beta * min(1, (step + 1) / warmup_steps)``.

    A linear warm-up (Bowman et al., 2016) that starts at ``beta / warmup_steps`` at step 0
    (not at 0: the first step already sees some KL) and reaches ``beta`` at step
    ``warmup_steps - 1``; ``beta`` throughout when ``warmup_steps`` is 0.
    """
    beta = jnp.float32(beta)
    warmup = int(warmup_steps)
    if warmup <= 0:
        return beta
    return beta * jnp.minimum(1.0, (step.astype(jnp.float32) + 1.0) / warmup)


def _masked_mean(values: jax.Array, weights: jax.Array, count: jax.Array) -> jax.Array:
    return jnp.sum(values * weights) / count


def make_objective(
    vae: VAE,
    *,
    name: str = "elbo",
    num_samples: int = 1,
    kl: str = "analytic",
    beta: float = 1.0,
    kl_warmup_steps: int = 0,
    free_bits: float = 0.0,
):
    """The loss to minimize, ``objective(params, key, x, mask, step) -> (loss, metrics)``.

    The arguments are the fields of ``config.objective``
    (``make_objective(vae, **config.objective)``).

    Args:
      vae: the model's pure functions.
      name: ``"elbo"`` or ``"iwae"``, the importance-weighted bound (Burda et al., 2015).
      num_samples: latent draws per example (K for iwae).
      kl: elbo: ``"analytic"`` or ``"mc"`` (Monte Carlo at the same draws).
      beta: elbo: weight of the KL term (Higgins et al., 2017).
      kl_warmup_steps: elbo: the KL weight rises linearly from ``beta / kl_warmup_steps``
        at step 0 to ``beta`` at step ``kl_warmup_steps - 1`` (0 = off; see ``kl_weight``).
      free_bits: elbo: nats per latent dimension below which the KL is not penalized
        (Kingma et al., 2016; 0 = off).
    """
    num_samples = int(num_samples)
    kl_estimator = kl
    free_bits = float(free_bits)

    def elbo_objective(params, key, x, mask, step):
        weights = mask.astype(jnp.float32)
        count = jnp.maximum(weights.sum(), 1.0)
        out = vae.elbo(params, key, x, num_samples=num_samples, kl=kl_estimator, beta=1.0)
        weight = kl_weight(step, beta=beta, warmup_steps=kl_warmup_steps)
        if free_bits > 0:
            # Free bits (Kingma et al., 2016): each latent dimension's KL, averaged over the
            # batch, is only penalized above `free_bits` nats.
            kl_per_dim = jnp.sum(out.kl_per_dim * weights[:, None], axis=0) / count
            kl_penalty = jnp.sum(jnp.maximum(kl_per_dim, free_bits))
        else:
            kl_penalty = _masked_mean(out.kl, weights, count)
        log_likelihood = _masked_mean(out.log_likelihood, weights, count)
        loss = -(log_likelihood - weight * kl_penalty)
        metrics = {
            "loss": loss,
            "elbo": _masked_mean(out.elbo, weights, count),
            "log_likelihood": log_likelihood,
            "kl": _masked_mean(out.kl, weights, count),
            "beta": weight,
        }
        return loss, metrics

    def iwae_objective(params, key, x, mask, step):
        del step
        weights = mask.astype(jnp.float32)
        count = jnp.maximum(weights.sum(), 1.0)
        # The K draws of `vae.iwae_bound` (same keys), kept to report the ELBO terms too.
        q = vae.encode(params, x)
        z = vae.reparameterize(key, q, num_samples)
        log_likelihood = vae.decode(params, z).log_prob(x)  # (K, B)
        log_weights = log_likelihood + vae.prior().log_prob(z) - q.log_prob(z)
        bound = jax.nn.logsumexp(log_weights, axis=0) - jnp.log(float(num_samples))
        loss = -_masked_mean(bound, weights, count)
        # The ELBO terms as the elbo objective reports them with kl="analytic" and K draws:
        # the log-likelihood of these draws and the closed-form KL, and elbo = their
        # difference, so the three reported numbers add up.
        mean_log_likelihood = _masked_mean(log_likelihood.mean(0), weights, count)
        kl = _masked_mean(q.kl(vae.prior()), weights, count)
        metrics = {
            "loss": loss,
            "iwae_bound": -loss,
            "elbo": mean_log_likelihood - kl,
            "log_likelihood": mean_log_likelihood,
            "kl": kl,
            "beta": jnp.float32(1.0),
        }
        return loss, metrics

    if name == "elbo":
        return elbo_objective
    if name == "iwae":
        return iwae_objective
    raise ValueError(f"objective.name={name!r}")
