"""Tests of ``vae_jax/core/``: keys, draws, distributions, precision, networks."""
