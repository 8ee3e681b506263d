"""What every entry point shares: one-line errors and quiet library logs."""

from __future__ import annotations

import logging as python_logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging

from vae_jax.errors import ConfigError, UserFacingError

_REPO = Path(__file__).resolve().parents[1]
_OWN_CODE = tuple(str(_REPO / folder) + "/" for folder in ("vae_jax", "experiments", "scripts"))

# Exit statuses of the entry points: 0 done, 1 an error (one line on stderr), and
EXIT_STOPPED = 75  # stopped early by a signal, resumable: run the same command again
EXIT_INTERRUPTED = 130  # Ctrl-C outside the training loop: resume from the last checkpoint

_LIBRARY_LOGS = flags.DEFINE_bool(
    "library_logs", False, "Show INFO logs of libraries (orbax, TFDS, ...), not only ours."
)


class _OwnInfoLogsOnly(python_logging.Filter):
    """Passes warnings and errors from anywhere, INFO and below only from this repo."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno >= python_logging.WARNING or record.pathname.startswith(_OWN_CODE)


def config_value(config_flag, name: str = "--config"):
    """The config of a ``DEFINE_config_file`` flag; a file that does not load or an
    override that names no field (ml_collections raises on first access) becomes one line
    naming the flag."""
    try:
        config = config_flag.value
        config.keys()  # a config file that failed to load raises here, not before
        return config
    except (AttributeError, KeyError, OSError, TypeError, ValueError) as error:
        raise ConfigError(f"{name}: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error)
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a quoted repr
        text = text[1:-1].replace("\\n", "\n").replace("\\'", "'")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _parse_flags_in_one_line(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a config override that names no field or a config file
    that does not load (ml_collections raises while parsing) reported in one line, exit 1."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        sys.stderr.write(f"error: a --config.<field> override names no config field: "
                         f"{_one_line(error)}\n")  # fmt: skip
        sys.exit(1)
    except OSError as error:  # a config file that does not load, with overrides given
        sys.stderr.write(f"error: --config: {_one_line(error)}\n")
        sys.exit(1)


def _quiet_closed_event_loops() -> None:
    """orbax/tensorstore threads that finish after a failed restore report "Event loop is
    closed" (harmless: the restore already failed and was reported in one line) as a
    traceback each; drop those, report anything else as Python would."""
    default_unraisable, default_thread = sys.unraisablehook, threading.excepthook

    def closed_loop(error) -> bool:
        return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"

    def unraisable(info):
        if not closed_loop(info.exc_value):
            default_unraisable(info)

    def thread(args):
        if not closed_loop(args.exc_value):
            default_thread(args)

    sys.unraisablehook, threading.excepthook = unraisable, thread
    # A failed restore can also leave orbax's reading tasks with their exception unread:
    # asyncio logs each, with a traceback, when the task is collected (at any later time).
    python_logging.getLogger("asyncio").addFilter(_UnreadRestoreTaskErrors())


class _UnreadRestoreTaskErrors(python_logging.Filter):
    """Drops asyncio's "Task/Future exception was never retrieved" for orbax's checkpoint
    reads through tensorstore (the restore's failure is reported in one line already)."""

    UNREAD = ("Task exception was never retrieved", "Future exception was never retrieved")

    def filter(self, record: python_logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.startswith(self.UNREAD)
            and ("async_deserialize" in message or "tensorstore_spec" in message)
        )


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, reporting a ``UserFacingError`` as ``error: ...`` (exit 1)
    and Ctrl-C outside the training loop in one line (exit 130)."""

    def main_reporting_errors(argv: list[str]) -> None:
        _quiet_closed_event_loops()
        if not _LIBRARY_LOGS.value:
            absl_logging.get_absl_handler().addFilter(_OwnInfoLogsOnly())
        try:
            main(argv)
        except UserFacingError as error:
            sys.stderr.write(f"error: {error}\n")
            sys.stdout.flush()
            sys.stderr.flush()
            # At once: background threads of orbax/tensorstore would otherwise print their
            # own tracebacks while the interpreter shuts down, after the one line.
            os._exit(1)
        except KeyboardInterrupt:
            sys.stderr.write(
                "interrupted (Ctrl-C); run the same command to resume from the last checkpoint\n"
            )
            sys.stderr.flush()
            sys.exit(EXIT_INTERRUPTED)

    app.run(main_reporting_errors, flags_parser=_parse_flags_in_one_line)
