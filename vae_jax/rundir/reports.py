"""Moved: the code lives in ``vae_jax.run.reports``; this path imports that same module."""

import sys

from vae_jax.run import reports

sys.modules[__name__] = reports
