"""Moved: the code lives in ``vae_jax.run.parallel``; this path imports that same module."""

import sys

from vae_jax.run import parallel

sys.modules[__name__] = parallel
