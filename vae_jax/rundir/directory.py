"""Moved: the code lives in ``vae_jax.run.directory``; this path imports that same module."""

import sys

from vae_jax.run import directory

sys.modules[__name__] = directory
