"""Moved: the code lives in ``vae_jax.run.loading``; this path imports that same module."""

import sys

from vae_jax.run import loading

sys.modules[__name__] = loading
