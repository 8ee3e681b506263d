"""Moved: the code lives in ``vae_jax.run.checkpointing``; this path imports that same module."""

import sys

from vae_jax.run import checkpointing

sys.modules[__name__] = checkpointing
