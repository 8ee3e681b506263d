"""Tests of ``vae_jax/evaluation/``: bounds, diagnostics, per-example evaluation, AIS,
evaluating a run."""
