"""The model side: components behind one contract, the bounds written once, the builder.

* ``contract``: the latent distribution contract and the ``Capabilities`` parts declare;
* ``priors``, ``posteriors`` (with ``flows``), ``hierarchy``: the components;
* ``compatibility``: the one table of what combines, from the capabilities;
* ``bounds``: ``elbo``, ``log_importance_weights``, ``iwae_bound``, ``generate``;
* ``vae``: the ``VAE`` and its builder ``make_vae(**kwargs)``.
"""

from vae_jax.model.bounds import (
    KL_ESTIMATORS,
    OBSERVATIONS,
    ElboOutput,
    Generation,
    reparameterize,
    sample_keys,
)
from vae_jax.model.vae import VAE, evaluation_kl, has_closed_form_kl, make_vae

__all__ = [
    "KL_ESTIMATORS",
    "OBSERVATIONS",
    "VAE",
    "ElboOutput",
    "Generation",
    "evaluation_kl",
    "has_closed_form_kl",
    "make_vae",
    "reparameterize",
    "sample_keys",
]
