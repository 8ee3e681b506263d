"""Posterior families: how the encoder's Gaussian (and context) become ``q(z|x)`` of a layer.

* ``gaussian``: the diagonal Gaussian itself (Kingma & Welling, 2014): density everywhere,
  a closed-form KL against a Gaussian prior, a KL per dimension.
* ``iaf``: that Gaussian pushed through an inverse autoregressive flow (Kingma et al.,
  2016; ``vae_jax.model.flows``), reading a context vector the encoder computes beside it;
  density known at its own draws only.

A family is the posterior of a one-layer model, or of ``z_1`` in a hierarchy
(``vae_jax.model.hierarchy``), where it wraps the layer's Gaussian (the ladder's merged one
in top-down inference). The builder (``vae_jax.model.vae``) is the only place that maps a
family's name to it; everything else reads ``capabilities``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from vae_jax.core import distributions
from vae_jax.model import flows
from vae_jax.model.contract import Capabilities

POSTERIORS = ("gaussian", "iaf")

# Declared before anything is built: the compatibility table reads these.
CAPABILITIES = {
    "gaussian": Capabilities(density_everywhere=True, diagonal_gaussian=True, per_dimension=True),
    "iaf": Capabilities(density_everywhere=False),
}


class PosteriorFamily(NamedTuple):
    """A posterior family of one stochastic layer, as pure functions.

    Attributes:
      name: the family's name (``model.posterior``), for records only.
      capabilities: what its distributions can do (``vae_jax.model.contract``).
      context_dim: width of the context it reads from the encoder (0: none).
      init: ``init(key) -> params`` (``{}`` without parameters).
      wrap: ``wrap(gaussian, context, params) -> q`` of the latent contract.
      described: what the latent diagnostics describe of its ``q`` (its summary Gaussian).
    """

    name: str
    capabilities: Capabilities
    context_dim: int
    init: Callable[[jax.Array], Any]
    wrap: Callable[[distributions.DiagGaussian, Any, Any], Any]
    described: str


def check_posterior(posterior: str) -> None:
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior={posterior!r}; choose one of {POSTERIORS}")


def gaussian() -> PosteriorFamily:
    """The diagonal Gaussian posterior: no parameters of its own, no context."""
    return PosteriorFamily(
        name="gaussian",
        capabilities=CAPABILITIES["gaussian"],
        context_dim=0,
        init=lambda key: {},
        wrap=lambda gaussian, context, params: gaussian,
        described="q(z|x)",
    )


def iaf(
    *,
    latent_dim: int,
    num_steps: int,
    hidden_size: int,
    context_dim: int,
    compute_dtype: str = "float32",
) -> PosteriorFamily:
    """An inverse autoregressive flow on top of the layer's Gaussian (Kingma et al., 2016).

    Args:
      latent_dim: dimension of the layer the flow transforms.
      num_steps: MADE steps (the variable order reversed every other step).
      hidden_size: width of each MADE.
      context_dim: width of the encoder's context the flow reads.
      compute_dtype: operands of the MADEs' products, accumulated in float32 (the
        model's ``compute_dtype``; ``vae_jax.core.precision``).
    """
    flow = flows.IAF(int(latent_dim), int(num_steps), int(hidden_size), compute_dtype)

    def init(key: jax.Array) -> Any:
        z = jnp.zeros((1, int(latent_dim)), jnp.float32)
        context = jnp.zeros((1, int(context_dim)), jnp.float32)
        return flow.init(key, z, context)["params"]

    def apply_flow(flow_params: Any, z: jax.Array, context: jax.Array):
        return flow.apply({"params": flow_params}, z, context)

    return PosteriorFamily(
        name="iaf",
        capabilities=CAPABILITIES["iaf"],
        context_dim=int(context_dim),
        init=init,
        wrap=lambda gaussian, context, params: flows.IAFPosterior(
            gaussian, context, params, apply_flow
        ),
        described="the IAF's base Gaussian",
    )
