"""Tests of ``vae_jax/model/``: priors, posteriors and flows, hierarchies, the compatibility
table, the VAE and its bounds."""
