"""The training objective: ELBO (beta, KL warm-up, free bits) or IWAE-k, and its
gradient estimator.

``make_objective(vae, name=..., ...)`` returns
``objective(params, key, x, mask, step) -> (loss, metrics)``. The loss is averaged over
the examples where ``mask`` is True (the last batch of an epoch is padded). Metrics always
include the plain ELBO (beta = 1) and its terms, so runs with different objectives can be
compared on the same numbers.

Gradient estimators change the loss's gradient, not its value (up to float32 rounding):

* ``reparameterization``: the gradient of the Monte Carlo bound through ``z = mu + sigma *
  eps`` (Kingma & Welling, 2014);
* ``stl``, "sticking the landing" (Roeder et al., 2017), for the ELBO with ``kl="mc"``:
  ``log q(z|x)`` with its parameters held constant, dropping the score term (zero mean);
* ``dreg``, doubly reparameterized (Tucker et al., 2018), for the IWAE bound: the encoder
  gets ``sum_k w_k^2 d log w_k / dz_k dz_k / dphi`` (normalized weights ``w``), the decoder
  the IWAE gradient ``sum_k w_k grad log w_k``; unbiased, and the encoder's variance no
  longer grows with K.
"""

from __future__ import annotations

from collections.abc import Collection

import jax
import jax.numpy as jnp

from vae_jax.model import VAE, compatibility


def kl_weight(
    step: jax.Array,
    *,
    beta: float,
    warmup_steps: int | None,
    warmup_epochs: int = 0,
    steps_per_epoch: int = 0,
) -> jax.Array:
    """The KL weight at ``step`` (from 0): ``beta * min(1, (step + 1) / warmup_steps)``.

    A linear warm-up (Bowman et al., 2016) that starts at ``beta / warmup_steps`` at step 0
    (not at 0: the first step already sees some KL) and reaches ``beta`` at step
    ``warmup_steps - 1``. ``warmup_steps`` may be a traced scalar; None means no warm-up in
    the program (``beta`` throughout), and so does 0 (``min(1, inf)`` is exactly 1).

    Counted in epochs instead (``warmup_epochs > 0``), the weight is constant within an
    epoch: ``beta * min(1, (e + 1) / warmup_epochs)`` in epoch ``e = step //
    steps_per_epoch`` (from 0), as the VampPrior code's ``beta = epoch / warmup`` with its
    epochs counted from 1.
    """
    beta = jnp.asarray(beta, jnp.float32)
    if warmup_epochs:
        epoch = step // int(steps_per_epoch)
        warmup = jnp.float32(warmup_epochs)
        return beta * jnp.minimum(1.0, (epoch.astype(jnp.float32) + 1.0) / warmup)
    if warmup_steps is None:
        return beta
    warmup = jnp.asarray(warmup_steps, jnp.float32)
    return beta * jnp.minimum(1.0, (step.astype(jnp.float32) + 1.0) / warmup)


# Fields that are off at 0 and add a branch to the program when on.
SWITCHES = ("kl_warmup_steps", "free_bits")


def _switches_on(switched_on, **numbers) -> frozenset[str]:
    """``switched_on`` when given (by the program builder: the values may be traced), else
    the switches whose number is above 0."""
    if switched_on is not None:
        return frozenset(switched_on)
    return frozenset(name for name, value in numbers.items() if value > 0)


def _masked_mean(values: jax.Array, weights: jax.Array, count: jax.Array) -> jax.Array:
    return jnp.sum(values * weights) / count


GRADIENT_ESTIMATORS = compatibility.GRADIENT_ESTIMATORS


def check_gradient_estimator(gradient_estimator: str, *, name: str, kl: str) -> None:
    """Raises ``ValueError`` for an estimator that does not apply to this bound (the
    compatibility table's rule, ``vae_jax.model.compatibility``)."""
    if gradient_estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(
            f"gradient_estimator={gradient_estimator!r}; choose one of {GRADIENT_ESTIMATORS}"
        )
    refused = compatibility.estimator_refusals(name, kl, gradient_estimator)
    if refused:
        raise ValueError(refused[0].message(qualified=False))


def _with_gradient(value: jax.Array, surrogate: jax.Array) -> jax.Array:
    """``value`` with the gradient of ``surrogate`` (same shape); the value exactly, since
    ``surrogate - stop_gradient(surrogate)`` is exactly 0."""
    return jax.lax.stop_gradient(value) + (surrogate - jax.lax.stop_gradient(surrogate))


def _dreg_surrogate(vae: VAE, params, x, q, z, log_weights) -> jax.Array:
    """Per example, a function whose gradient is the DReG estimate of the IWAE bound's
    (Tucker et al., 2018, eq. 5): ``sum_k w_k^2 log w_k`` through ``z_k`` only (decoder,
    prior and q's parameters held) for the encoder, ``sum_k w_k log w_k`` with ``z_k`` held
    for the generative model p(x, z) (decoder and prior; a VampPrior's dependence on the
    encoder's parameters is part of p). Costs a second decoder pass."""
    held = jax.lax.stop_gradient
    normalized = held(jax.nn.softmax(log_weights, axis=0))  # (K, B)
    q_held = held(q)

    def log_weights_at(model_params, z):
        log_joint = vae.decode(model_params, z).log_prob(x) + vae.prior(model_params).log_prob(z)
        return log_joint - q_held.log_prob(z)

    through_z = log_weights_at(held(params), z)
    through_model = log_weights_at(params, held(z))
    return jnp.sum(jnp.square(normalized) * through_z + normalized * through_model, axis=0)


def make_objective(
    vae: VAE,
    *,
    name: str = "elbo",
    num_samples: int = 1,
    kl: str = "analytic",
    beta: float = 1.0,
    kl_warmup_steps: int = 0,
    free_bits: float = 0.0,
    gradient_estimator: str = "reparameterization",
    kl_warmup_epochs: int = 0,
    steps_per_epoch: int = 0,
    switched_on: Collection[str] | None = None,
):
    """The loss to minimize, ``objective(params, key, x, mask, step) -> (loss, metrics)``.

    The arguments are the fields of ``config.objective``
    (``make_objective(vae, **config.objective)``). ``beta``, ``kl_warmup_steps`` and
    ``free_bits`` may be traced scalars (``vae_jax.hyperparameters``); which switches are
    on is then given by ``switched_on``, never read from a value.

    Args:
      vae: the model's pure functions.
      name: ``"elbo"`` or ``"iwae"``, the importance-weighted bound (Burda et al., 2015).
      num_samples: latent draws per example (K for iwae).
      kl: elbo: ``"analytic"`` or ``"mc"`` (Monte Carlo at the same draws).
      beta: elbo: weight of the KL term (Higgins et al., 2017).
      kl_warmup_steps: elbo: the KL weight rises linearly from ``beta / kl_warmup_steps``
        at step 0 to ``beta`` at step ``kl_warmup_steps - 1`` (0 = off; see ``kl_weight``).
      kl_warmup_epochs: elbo: the same warm-up counted in epochs, constant within one
        (0 = off; not with ``kl_warmup_steps``); needs ``steps_per_epoch``.
      steps_per_epoch: optimizer steps per epoch (only read by ``kl_warmup_epochs``).
      free_bits: elbo: nats per latent dimension below which the KL is not penalized
        (Kingma et al., 2016; 0 = off).
      gradient_estimator: ``"reparameterization"``, ``"stl"`` (elbo with ``kl="mc"``) or
        ``"dreg"`` (iwae); see the module docstring.
      switched_on: the names in ``SWITCHES`` that are on (each adds a branch to the
        program), given when their values are traced
        (``vae_jax.hyperparameters.switched_on``); None: those above 0.
    """
    num_samples = int(num_samples)
    kl_estimator = kl
    kl_warmup_epochs = int(kl_warmup_epochs)
    if switched_on is None:  # numbers
        free_bits = float(free_bits)
    on = _switches_on(switched_on, kl_warmup_steps=kl_warmup_steps, free_bits=free_bits)
    warmup_steps = kl_warmup_steps if "kl_warmup_steps" in on else None
    if kl_warmup_epochs and (warmup_steps is not None or int(steps_per_epoch) < 1):
        raise ValueError(
            "kl_warmup_epochs needs steps_per_epoch >= 1 and excludes kl_warmup_steps, got "
            f"kl_warmup_steps={kl_warmup_steps}, steps_per_epoch={steps_per_epoch}"
        )
    check_gradient_estimator(gradient_estimator, name=name, kl=kl)
    combination = compatibility.Combination(
        prior=vae.prior_name,
        posterior=vae.posterior_name,
        num_layers=len(vae.latent_layers),
        inference=vae.inference or "bottom_up",
        objective=name,
        kl=kl,
        gradient_estimator=gradient_estimator,
        # a number as given (a refusal names it); with switched_on given: on or off
        free_bits=free_bits if switched_on is None else float("free_bits" in on),
    )
    refused = compatibility.refusals(combination, upper_latent_dims=vae.latent_layers[1:])
    if refused:  # the one compatibility table's first reason
        raise ValueError(refused[0].message(qualified=False))
    stick_the_landing = gradient_estimator == "stl"

    def elbo_objective(params, key, x, mask, step):
        weights = mask.astype(jnp.float32)
        count = jnp.maximum(weights.sum(), 1.0)
        out = vae.elbo(
            params,
            key,
            x,
            num_samples=num_samples,
            kl=kl_estimator,
            beta=1.0,
            stick_the_landing=stick_the_landing,
        )
        weight = kl_weight(
            step,
            beta=beta,
            warmup_steps=warmup_steps,
            warmup_epochs=kl_warmup_epochs,
            steps_per_epoch=steps_per_epoch,
        )
        if "free_bits" in on:
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
        if vae.density_everywhere:
            z, log_q = vae.reparameterize(key, q, num_samples), None
        else:  # a flow: log q at its own draws
            z, log_q = vae.draw(key, q, num_samples)
        log_likelihood = vae.decode(params, z).log_prob(x)  # (K, B)
        prior = vae.prior(params)
        log_p = prior.log_prob(z)
        if log_q is None:  # after the decoder and the prior, in the order that fixes bits
            log_q = q.log_prob(z)
        log_weights = log_likelihood + log_p - log_q
        bound = jax.nn.logsumexp(log_weights, axis=0) - jnp.log(float(num_samples))
        if gradient_estimator == "dreg":
            bound = _with_gradient(bound, _dreg_surrogate(vae, params, x, q, z, log_weights))
        loss = -_masked_mean(bound, weights, count)
        # The ELBO terms as the elbo objective reports them with K draws: the
        # log-likelihood of these draws and the closed-form KL (a learned prior or a flow:
        # the Monte Carlo KL of these draws), and elbo = their difference, so the three add up.
        mean_log_likelihood = _masked_mean(log_likelihood.mean(0), weights, count)
        if vae.closed_form_kl:
            kl_per_example = q.kl(prior)
        else:
            kl_per_example = jnp.mean(log_q - log_p, axis=0)
        kl = _masked_mean(kl_per_example, weights, count)
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
