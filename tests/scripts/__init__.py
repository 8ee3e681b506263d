"""Tests of ``scripts/``: data preparation, benchmarks, the accelerator check."""
