"""One owner per workdir: an OS-level lock that dies with the process that holds it.

``fcntl.flock`` on ``<workdir>/.lock``: the kernel releases it when the holder exits, even
after ``kill -9``, so a stale lock never blocks a resume. The holder writes its pid, host
and start time into the file, so a second process is refused in one line naming it.
(flock is per host on network file systems that do not forward it; a sweep spread over
hosts gives each task its own cells.)
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from pathlib import Path

from vae_jax.errors import UserFacingError
from vae_jax.run.files import LOCK_FILE


class WorkdirBusyError(UserFacingError):
    """Another process holds the workdir, or it cannot be written at all."""


def holder(workdir: str | Path) -> dict:
    """What the process holding (or that last held) the lock wrote: pid, host, started."""
    try:
        return json.loads((Path(workdir) / LOCK_FILE).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


class WorkdirLock:
    """Context manager: holds the lock of ``workdir`` (created if needed) or raises
    ``WorkdirBusyError`` at once. ``purpose`` (e.g. "training") is shown to a refused
    process."""

    def __init__(self, workdir: str | Path, purpose: str):
        self.workdir = Path(workdir)
        self.purpose = purpose
        self._file = None

    def acquire(self) -> WorkdirLock:
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            handle = open(self.workdir / LOCK_FILE, "a+")
        except OSError as error:  # under a file, read-only, /proc, a full disk
            raise WorkdirBusyError(
                f"--workdir={self.workdir} cannot be written ({error.strerror or error}); "
                "choose a directory you can write to"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            other = holder(self.workdir)
            raise WorkdirBusyError(
                f"--workdir={self.workdir} is in use ({other.get('purpose', 'a run')}) by pid "
                f"{other.get('pid', '?')} on {other.get('host', '?')} since "
                f"{other.get('started', '?')}; wait for it to finish or use another --workdir"
            ) from None
        self._file = handle
        holder_info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "purpose": self.purpose,
        }
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(holder_info))
            handle.flush()
        except OSError as error:  # a full disk: do not keep a lock nobody can name
            self.release()
            raise WorkdirBusyError(
                f"--workdir={self.workdir} cannot be written ({error.strerror or error})"
            ) from None
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def ownership(workdir: str | Path, purpose: str, *, primary: bool = True):
    """The lock of ``workdir`` for the process that writes it (``primary``); other
    processes of a multi-host run hold nothing."""
    return WorkdirLock(workdir, purpose) if primary else contextlib.nullcontext()
