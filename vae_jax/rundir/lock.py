"""Moved: the code lives in ``vae_jax.run.lock``; this path imports that same module."""

import sys

from vae_jax.run import lock

sys.modules[__name__] = lock
