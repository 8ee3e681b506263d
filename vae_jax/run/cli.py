"""What every entry point shares: one-line errors, SIGTERM as a resumable stop, quiet
library logs, ``--print_config``."""

from __future__ import annotations

import json
import logging as python_logging
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging

from vae_jax.errors import USER_FIXABLE_ERRNOS, ConfigError, UserFacingError

_REPO = Path(__file__).resolve().parents[1]
_OWN_CODE = tuple(str(_REPO / folder) + "/" for folder in ("vae_jax", "experiments", "scripts"))

# Exit statuses of the entry points: 0 done, 1 an error (one line on stderr), and
EXIT_STOPPED = 75  # stopped early by a signal, resumable: run the same command again
EXIT_INTERRUPTED = 130  # Ctrl-C outside the training loop: resume from the last checkpoint

_LIBRARY_LOGS = flags.DEFINE_bool(
    "library_logs", False, "Show INFO logs of libraries (orbax, TFDS, ...), not only ours."
)


def define_print_config(what: str = "the resolved config (after --config.* overrides)"):
    """The ``--print_config`` flag of an entry point."""
    return flags.DEFINE_bool("print_config", False, f"Print {what} as JSON and exit.")


def print_config(config) -> None:
    """Prints a config as ``config.json`` would hold it: every field with its value."""
    print(json.dumps(json.loads(config.to_json_best_effort()), indent=2))


class Terminated(BaseException):
    """SIGTERM outside the training loop (which saves at the epoch's end instead)."""


def _terminate(signum, frame):
    del signum, frame
    raise Terminated


class _OwnInfoLogsOnly(python_logging.Filter):
    """Passes warnings and errors from anywhere, INFO and below only from this repo."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        return record.levelno >= python_logging.WARNING or record.pathname.startswith(_OWN_CODE)


def config_value(config_flag, name: str = "--config"):
    """The config of a ``DEFINE_config_file`` flag; a file that does not load or parse,
    or an override that names no field (ml_collections raises on first access), becomes
    one line naming the flag (and the file's line)."""
    try:
        config = config_flag.value
        config.keys()  # a config file that failed to load raises here, not before
        return config
    except Exception as error:  # any error of the config file: one line
        problem = config_file_problem(error, _config_file_argument(sys.argv))
        if problem is None and not isinstance(
            error, AttributeError | KeyError | OSError | TypeError | ValueError
        ):
            raise
        raise ConfigError(problem or f"{name}: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    text = str(error)
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a quoted repr
        text = text[1:-1].replace("\\n", "\n").replace("\\'", "'")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _config_file_argument(argv: list[str]) -> str | None:
    """The value of ``--config`` in ``argv`` (None if not given)."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def config_file_problem(error: BaseException, path: str | None) -> str | None:
    """One line for an error raised while loading the config file ``path`` (a syntax
    error, an error in its code, no ``get_config``), naming the file and line; None if
    the error did not come from loading it."""
    if path is None:
        return None
    target = os.path.abspath(os.path.expanduser(path.split(":", 1)[0]))
    if (
        isinstance(error, SyntaxError)
        and error.filename
        and (os.path.abspath(error.filename) == target)
    ):
        return f"--config={path}: line {error.lineno}: {error.msg} (a Python syntax error)"
    if isinstance(error, AttributeError) and "get_config" in str(error):
        return (
            f"--config={path} defines no get_config(); a config file defines get_config() "
            "returning an ml_collections.ConfigDict (see experiments/configs/base.py)"
        )
    frames = traceback.extract_tb(error.__traceback__)
    in_the_file = [frame for frame in frames if os.path.abspath(frame.filename) == target]
    if in_the_file:
        where = in_the_file[-1]
        return f"--config={path}: line {where.lineno}: {type(error).__name__}: {_one_line(error)}"
    return None


def _parse_flags_in_one_line(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a config override that names no field, a config file
    that does not load or parse (ml_collections loads it while parsing), and overrides
    without ``--config`` reported in one line, exit 1."""
    config_path = _config_file_argument(argv)
    overrides = [a.split("=", 1)[0] for a in argv[1:] if a.startswith("--config.")]
    if overrides and config_path is None and "config" in flags.FLAGS:
        sys.stderr.write(f"error: {overrides[0]} overrides a field of the --config file, but no "
                         "--config is given: add --config=experiments/configs/<name>.py "
                         "(--print_config shows its fields)\n")  # fmt: skip
        sys.exit(1)
    try:
        return app.parse_flags_with_usage(argv)
    except SystemExit:
        raise
    except Exception as error:  # any error of the config file: one line
        problem = config_file_problem(error, config_path)
        if problem is None and isinstance(error, AttributeError | KeyError):
            problem = f"a --config.<field> override names no config field: {_one_line(error)}"
        if problem is None and isinstance(error, OSError):
            problem = f"--config: {_one_line(error)}"  # a file that does not load
        if problem is None:
            raise
        sys.stderr.write(f"error: {problem}\n")
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
    _ignore_unawaited_orbax_reads()


# The one coroutine of orbax's checkpoint reads seen left unawaited by a failed restore.
UNAWAITED_ORBAX_READ = r"coroutine 'Store\._get_array_metadatas' was never awaited"


def _ignore_unawaited_orbax_reads() -> None:
    """orbax's array-metadata read, abandoned by a failed restore, makes Python warn when
    its coroutine object is collected (three lines after the one line; seen once in a full
    suite run): that warning only is dropped."""
    warnings.filterwarnings("ignore", message=UNAWAITED_ORBAX_READ, category=RuntimeWarning)


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


def _exit_now(message: str, status: int) -> None:
    sys.stderr.write(message + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # At once: background threads of orbax/tensorstore would otherwise print their own
    # tracebacks while the interpreter shuts down, after the one line.
    os._exit(status)


def run(main: Callable[[list[str]], None]) -> None:
    """``absl.app.run(main)``, reporting a ``UserFacingError`` or a file system that
    refuses a write (full, read-only) as ``error: ...`` (exit 1), SIGTERM anywhere as a
    resumable stop (exit 75: inside the training loop after the epoch's checkpoint,
    elsewhere at once, which is as safe since every save is atomic) and Ctrl-C outside the
    training loop in one line (exit 130)."""

    def main_reporting_errors(argv: list[str]) -> None:
        _quiet_closed_event_loops()
        if not _LIBRARY_LOGS.value:
            absl_logging.get_absl_handler().addFilter(_OwnInfoLogsOnly())
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)
        try:
            main(argv)
        except UserFacingError as error:
            _exit_now(f"error: {error}", 1)
        except Terminated:
            _exit_now(
                "stopped by SIGTERM (saves are atomic: nothing written is lost); run the same "
                "command to resume",
                EXIT_STOPPED,
            )
        except OSError as error:
            if error.errno not in USER_FIXABLE_ERRNOS:
                raise
            where = error.filename or "a file"
            _exit_now(
                f"error: could not write {where} ({error.strerror}); what was written before "
                "is intact: free space or fix the directory, then run the same command again",
                1,
            )
        except KeyboardInterrupt:
            sys.stderr.write(
                "interrupted (Ctrl-C); run the same command to resume from the last checkpoint\n"
            )
            sys.stderr.flush()
            sys.exit(EXIT_INTERRUPTED)

    app.run(main_reporting_errors, flags_parser=_parse_flags_in_one_line)
