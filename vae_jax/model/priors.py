"""The prior ``p(z)`` as a component: fixed or learned, on ``z`` or on a hierarchy's top layer.

* ``standard_normal``: ``N(0, I)``, no parameters; the only prior with a closed-form KL
  to the Gaussian posterior (Kingma & Welling, 2014).
* ``mixture``: a learned mixture of ``num_components`` diagonal Gaussians (weights, means
  and scales are parameters; e.g. Dilokthanakul et al., 2016).
* ``vampprior``: the "variational mixture of posteriors" (Tomczak & Welling, 2018):
  ``p(z) = (1/C) sum_c q(z | u_c)``, the posteriors of the layer it is the prior of at
  ``C`` learned pseudo-inputs ``u_c``; the encoder's parameters are shared with the
  posterior. In a hierarchy it is the prior of the top layer ("HVAE + VampPrior").

A prior is a ``Prior`` of pure functions: ``init(key)`` draws its parameters (``{}`` when
fixed) and ``distribution(params)`` builds ``p`` from the model's parameters; both are
deterministic in their arguments, and drawing from ``p`` takes its own key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vae_jax.core import distributions, draws
from vae_jax.core.distributions import mixture as mixture_lib
from vae_jax.model.contract import Capabilities

PRIORS = ("standard_normal", "mixture", "vampprior")
# Declared before anything is built: the compatibility table reads these.
CAPABILITIES = {
    "standard_normal": Capabilities(
        density_everywhere=True, diagonal_gaussian=True, per_dimension=True
    ),
    "mixture": Capabilities(density_everywhere=True),
    "vampprior": Capabilities(density_everywhere=True),
}
# Whether the prior is a mixture of the model's own posteriors (it then needs their
# density at any z).
MIXES_POSTERIORS = {"standard_normal": False, "mixture": False, "vampprior": True}
# VampPrior's pseudo-inputs start as near-black images, 0.05 +- 0.01 per pixel (the paper's
# initialization); they are parameterized by their logits so that they stay in (0, 1),
# the range of the encoder's input.
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01
# How the pseudo-inputs are parameterized: sigmoid (above) | hardtanh: the Exemplar-VAE
# code's ``NonLinear(C, D, bias=False, activation=Hardtanh(0, 1))`` applied to the identity,
# i.e. ``clip(W, 0, 1)``, its weights drawn by ``he_init`` (``normal(0, sqrt(2 / C))``),
# which runs after ``add_pseudoinputs`` there and replaces its N(0.05, 0.01).
PSEUDO_INPUTS = ("sigmoid", "hardtanh")
# How a mixture prior's log-density is laid out (``model.mixture_density_version``).
MIXTURE_DENSITY_VERSIONS = mixture_lib.DENSITY_VERSIONS


class Prior(NamedTuple):
    """A prior component.

    Attributes:
      name: ``model.prior``, for records only.
      capabilities: what ``p`` can do (``vae_jax.model.contract``).
      learned: whether it has parameters (``params["prior"]``).
      init: ``init(key) -> params["prior"]``.
      distribution: ``distribution(params) -> p`` from the model's parameters.
    """

    name: str
    capabilities: Capabilities
    learned: bool
    init: Callable[[jax.Array], dict]
    distribution: Callable[[Any], Any]


def check_prior(prior: str) -> None:
    if prior not in PRIORS:
        raise ValueError(f"prior={prior!r}; choose one of {PRIORS}")


def has_closed_form_kl(prior: str) -> bool:
    """Whether ``KL(q(z|x) || p(z))`` has a closed form for a Gaussian ``q`` (else it is a
    Monte Carlo estimate)."""
    return CAPABILITIES[prior].diagonal_gaussian


def _check_density_version(density_version: int) -> None:
    if density_version not in MIXTURE_DENSITY_VERSIONS:
        raise ValueError(
            f"mixture_density_version={density_version!r}; choose one of {MIXTURE_DENSITY_VERSIONS}"
        )


def standard_normal(latent_dim: int) -> Prior:
    """``N(0, I)`` over ``latent_dim`` dimensions."""
    return Prior(
        name="standard_normal",
        capabilities=CAPABILITIES["standard_normal"],
        learned=False,
        init=lambda key: {},
        distribution=lambda params: distributions.standard_normal((int(latent_dim),)),
    )


def mixture(latent_dim: int, num_components: int, density_version: int = 1) -> Prior:
    """A mixture of ``num_components`` learned diagonal Gaussians: equal weights, means
    ``N(0, I)`` and unit scales at initialization; ``density_version``: how its
    log-density is laid out (``MixtureOfDiagGaussians``)."""
    latent_dim, num_components = int(latent_dim), int(num_components)
    _check_density_version(density_version)

    def init(key: jax.Array) -> dict:
        return {
            "logits": jnp.zeros((num_components,), jnp.float32),
            "loc": draws.normal(key, (num_components, latent_dim), jnp.float32),
            "log_scale": jnp.zeros((num_components, latent_dim), jnp.float32),
        }

    def distribution(params) -> distributions.MixtureOfDiagGaussians:
        p = params["prior"]
        return distributions.MixtureOfDiagGaussians(
            p["logits"], p["loc"], p["log_scale"], density_version=density_version
        )

    return Prior("mixture", CAPABILITIES["mixture"], True, init, distribution)


def pseudo_inputs(prior_params: dict) -> jax.Array:
    """VampPrior's pseudo-inputs ``u_c`` in [0, 1], shape ``(C, H, W, C_img)``."""
    if "pseudo_input_weights" in prior_params:  # hardtanh
        return jnp.clip(prior_params["pseudo_input_weights"], 0.0, 1.0)
    return jax.nn.sigmoid(prior_params["pseudo_input_logits"])


def vampprior(
    num_components: int,
    input_shape: tuple[int, ...],
    posterior_at: Callable[[Any, jax.Array], distributions.DiagGaussian],
    parameterization: str = "sigmoid",
    density_version: int = 1,
) -> Prior:
    """The VampPrior (Tomczak & Welling, 2018) of the layer whose posterior is ``posterior_at``.

    Args:
      num_components: pseudo-inputs ``C``.
      input_shape: ``(H, W, C)`` of the encoder's input.
      posterior_at: ``(model params, encoder input) -> DiagGaussian``: that layer's
        posterior at an input, without the data's rescaling (the pseudo-inputs are already
        in (0, 1)).
      parameterization: one of ``PSEUDO_INPUTS``.
      density_version: how the mixture's log-density is laid out (``MixtureOfDiagGaussians``).
    """
    num_components = int(num_components)
    _check_density_version(density_version)
    if parameterization not in PSEUDO_INPUTS:
        raise ValueError(f"pseudo_inputs={parameterization!r}; choose one of {PSEUDO_INPUTS}")

    def init(key: jax.Array) -> dict:
        if parameterization == "hardtanh":
            scale = (2.0 / num_components) ** 0.5
            weights = scale * draws.normal(key, (num_components, *input_shape), jnp.float32)
            return {"pseudo_input_weights": weights}
        pixels = PSEUDO_INPUT_MEAN + PSEUDO_INPUT_STD * draws.normal(
            key, (num_components, *input_shape), jnp.float32
        )
        return {"pseudo_input_logits": jax.scipy.special.logit(jnp.clip(pixels, 1e-3, 1 - 1e-3))}

    def distribution(params) -> distributions.MixtureOfDiagGaussians:
        posteriors = posterior_at(params, pseudo_inputs(params["prior"]))
        return distributions.MixtureOfDiagGaussians(
            jnp.zeros((num_components,), jnp.float32),
            posteriors.loc,
            posteriors.log_scale,
            density_version=density_version,
        )

    return Prior("vampprior", CAPABILITIES["vampprior"], True, init, distribution)
