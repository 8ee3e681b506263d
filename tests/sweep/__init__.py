"""Tests of ``vae_jax/sweep/``: seeds, strategies, the runner, grids, tasks and tables."""
