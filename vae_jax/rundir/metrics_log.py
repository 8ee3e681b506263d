"""Moved: the code lives in ``vae_jax.run.metrics_log``; this path imports that same module."""

import sys

from vae_jax.run import metrics_log

sys.modules[__name__] = metrics_log
