"""Moved: a run's directory lives in ``vae_jax.run`` (each old module path still imports)."""
