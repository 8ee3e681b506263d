"""vae-jax: variational autoencoders as pure JAX functions with explicit PRNG keys.

    vae = vae_jax.make_vae(image_shape=(28, 28, 1), latent_dim=20)   # or vae_from_config(config)
    params = vae.init(key)
    out = vae.elbo(params, key, x)

See README.md and ../shared/DESIGN.md.
"""

from vae_jax import distributions, objectives
from vae_jax.adapter import vae_from_config
from vae_jax.core import rng
from vae_jax.model import VAE, ElboOutput, Generation, make_vae, reparameterize
from vae_jax.run.loading import load_run

__all__ = [
    "VAE",
    "ElboOutput",
    "Generation",
    "distributions",
    "load_run",
    "make_vae",
    "objectives",
    "reparameterize",
    "rng",
    "vae_from_config",
]
