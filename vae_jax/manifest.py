"""Moved: the code lives in ``vae_jax.run.manifest``; this path imports that same module."""

import sys

from vae_jax.run import manifest

sys.modules[__name__] = manifest
