"""Tests of ``vae_jax/run/``: checkpoints, the entry points' command-line helpers, runtime
settings."""
