"""vae-jax: variational autoencoders as pure JAX functions with explicit PRNG keys.

    vae = vae_jax.make_vae(config)
    params = vae.init(key)
    out = vae.elbo(params, key, x)

See README.md and ../shared/DESIGN.md.
"""

from vae_jax import distributions, rng
from vae_jax.model import VAE, ElboOutput, Generation, make_vae, reparameterize

__all__ = [
    "VAE",
    "ElboOutput",
    "Generation",
    "distributions",
    "load_run",
    "make_vae",
    "reparameterize",
    "rng",
]


def load_run(workdir, step=None):
    """Restores ``(vae, params, config)`` of a finished or interrupted run."""
    from vae_jax.training.run_loading import load_run as _load_run

    return _load_run(workdir, step=step)
