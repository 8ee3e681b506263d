"""Moved: the code lives in ``vae_jax.run.runtime``; this path imports that same module."""

import sys

from vae_jax.run import runtime

sys.modules[__name__] = runtime
