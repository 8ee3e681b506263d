"""What every entry point shares: one-line errors and quiet library logs."""

from __future__ import annotations

import logging as python_logging
import sys
from collections.abc import Callable
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging

from vae_jax.errors import UserFacingError

_REPO = Path(__file__).resolve().parents[1]
_OWN_CODE = tuple(str(_REPO / folder) + "/" for folder in ("vae_jax", "experiments", "scripts"))

_LIBRARY_LOGS = flags.DEFINE_bool(
    "library_logs", False, "Show INFO logs of libraries (orbax, TFDS, ...), not only ours."
)


class _OwnInfoLogsOnly(python_logging.Filter):
    """Passes warnings and errors from anywhere, INFO and below only from this repo."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno >= python_logging.WARNING or record.pathname.startswith(_OWN_CODE)


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, reporting a ``UserFacingError`` as ``error: ...`` (exit 1)."""

    def main_reporting_errors(argv: list[str]) -> None:
        if not _LIBRARY_LOGS.value:
            absl_logging.get_absl_handler().addFilter(_OwnInfoLogsOnly())
        try:
            main(argv)
        except UserFacingError as error:
            sys.stderr.write(f"error: {error}\n")
            sys.stderr.flush()
            sys.exit(1)

    app.run(main_reporting_errors)
