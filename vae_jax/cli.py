"""What every entry point shares: one-line errors and the repository on ``sys.path``."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app

from vae_jax.errors import UserFacingError


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, reporting a ``UserFacingError`` as ``error: ...`` (exit 1)."""

    def main_reporting_errors(argv: list[str]) -> None:
        try:
            main(argv)
        except UserFacingError as error:
            sys.stderr.write(f"error: {error}\n")
            sys.stderr.flush()
            sys.exit(1)

    app.run(main_reporting_errors)
