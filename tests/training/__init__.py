"""Tests of ``vae_jax/training/``: the step, summaries, resume, warm-ups, early stopping."""
