"""The prior ``p(z)`` as a pure part of the model: fixed or learned.

* ``standard_normal``: ``N(0, I)``, no parameters; the only prior with a closed-form KL
  to the Gaussian posterior (Kingma & Welling, 2014).
* ``mixture``: a learned mixture of ``num_components`` diagonal Gaussians (weights, means
  and scales are parameters; e.g. Dilokthanakul et al., 2016).
* ``vampprior``: the "variational mixture of posteriors" (Tomczak & Welling, 2018):
  ``p(z) = (1/C) sum_c q(z | u_c)``, the encoder's posteriors at ``C`` learned
  pseudo-inputs ``u_c``; the encoder's parameters are shared with the posterior.

``init_prior(key, ...)`` draws the prior's parameters (``{}`` for ``standard_normal``);
``prior_distribution(params, ...)`` builds ``p(z)`` from the model's parameters. Both are
deterministic in their arguments; drawing from ``p(z)`` takes its own key (``sample``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from vae_jax import distributions, draws

PRIORS = ("standard_normal", "mixture", "vampprior")
# VampPrior's pseudo-inputs start as near-black images, 0.05 +- 0.01 per pixel (the paper's
# initialization); they are parameterized by their logits so that they stay in (0, 1),
# the range of the encoder's input.
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01


def check_prior(prior: str) -> None:
    if prior not in PRIORS:
        raise ValueError(f"prior={prior!r}; choose one of {PRIORS}")


def has_closed_form_kl(prior: str) -> bool:
    """Whether ``KL(q(z|x) || p(z))`` has a closed form (else it is a Monte Carlo estimate)."""
    return prior == "standard_normal"


def init_prior(
    key: jax.Array,
    *,
    prior: str,
    num_components: int,
    latent_dim: int,
    input_shape: tuple[int, ...],
) -> dict:
    """The prior's initial parameters.

    Args:
      key: the prior's part of the model's ``init`` key.
      prior: one of ``PRIORS``.
      num_components: ``mixture``: Gaussians; ``vampprior``: pseudo-inputs.
      latent_dim: dimension of ``z``.
      input_shape: ``(H, W, C)`` of the encoder's input (``vampprior`` only).

    Returns:
      ``{}`` for ``standard_normal``; for ``mixture`` equal weights, means ``N(0, I)`` and
      unit scales; for ``vampprior`` the logits of the pseudo-inputs.
    """
    check_prior(prior)
    if prior == "standard_normal":
        return {}
    num_components = int(num_components)
    if prior == "mixture":
        return {
            "logits": jnp.zeros((num_components,), jnp.float32),
            "loc": draws.normal(key, (num_components, latent_dim), jnp.float32),
            "log_scale": jnp.zeros((num_components, latent_dim), jnp.float32),
        }
    pixels = PSEUDO_INPUT_MEAN + PSEUDO_INPUT_STD * draws.normal(
        key, (num_components, *input_shape), jnp.float32
    )
    return {"pseudo_input_logits": jax.scipy.special.logit(jnp.clip(pixels, 1e-3, 1 - 1e-3))}


def pseudo_inputs(prior_params: dict) -> jax.Array:
    """VampPrior's pseudo-inputs ``u_c`` in (0, 1), shape ``(C, H, W, C_img)``."""
    return jax.nn.sigmoid(prior_params["pseudo_input_logits"])


def prior_distribution(
    params: dict,
    *,
    prior: str,
    latent_dim: int,
    encoder_network: Callable[[dict, jax.Array], distributions.DiagGaussian],
):
    """``p(z)`` of a model with parameters ``params`` (``params["prior"]`` when learned).

    Args:
      params: the model's parameters.
      prior: one of ``PRIORS``.
      latent_dim: dimension of ``z``.
      encoder_network: ``(encoder params, encoder input) -> q(z|x)``: the encoder without
        the data's rescaling (``vampprior`` only).

    Returns:
      A ``DiagGaussian`` (``standard_normal``) or a ``MixtureOfDiagGaussians``.
    """
    if prior == "standard_normal":
        return distributions.standard_normal((latent_dim,))
    if prior == "mixture":
        p = params["prior"]
        return distributions.MixtureOfDiagGaussians(p["logits"], p["loc"], p["log_scale"])
    check_prior(prior)
    posteriors = encoder_network(params["encoder"], pseudo_inputs(params["prior"]))
    num_components = posteriors.loc.shape[0]
    return distributions.MixtureOfDiagGaussians(
        jnp.zeros((num_components,), jnp.float32), posteriors.loc, posteriors.log_scale
    )
