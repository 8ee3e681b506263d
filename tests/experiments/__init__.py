"""Tests of ``experiments/``: the randomness study, the results table, the reproductions."""
