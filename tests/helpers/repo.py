"""The checkout under test and the environment its entry points run in."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def subprocess_env(**extra) -> dict:
    """Environment for running entry points in a subprocess (the project is installed, so
    nothing is added to the path): os.environ plus ``extra``."""
    env = dict(os.environ)
    env.update(extra)
    return env
