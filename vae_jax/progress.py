"""Moved: the code lives in ``vae_jax.run.progress``; this path imports that same module."""

import sys

from vae_jax.run import progress

sys.modules[__name__] = progress
