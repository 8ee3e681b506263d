"""Tests of ``vae_jax/data/``: IDX files, ingestion, the reader, preprocessing, batching,
the pipeline."""
