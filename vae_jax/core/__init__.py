"""The core: pure JAX, no config, no I/O.

``rng`` (the run's key streams), ``draws`` (random draws computed flat), ``precision``
(compute dtypes), ``distributions`` (one family per file), ``networks`` (Flax modules used as
pure ``init``/``apply``), ``likelihoods`` (the observation models).
"""
