"""Public alias of ``vae_jax.core.distributions`` (``import vae_jax.distributions`` and
``from vae_jax.distributions import DiagGaussian`` keep working since the core moved)."""

from vae_jax.core.distributions import *  # noqa: F403
from vae_jax.core.distributions import __all__  # noqa: F401
