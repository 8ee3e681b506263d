"""Moved: the code lives in ``vae_jax.run.files``; this path imports that same module."""

import sys

from vae_jax.run import files

sys.modules[__name__] = files
