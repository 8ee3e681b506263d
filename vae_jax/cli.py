"""Moved: the code lives in ``vae_jax.run.cli``; this path imports that same module."""

import sys

from vae_jax.run import cli

sys.modules[__name__] = cli
