"""SIGTERM as a request to stop: the loop saves a checkpoint at the next epoch boundary
and returns cleanly (schedulers send SIGTERM before they kill a job)."""

from __future__ import annotations

import signal
import threading

from absl import logging


class TerminationRequest:
    """Context manager: ``bool(request)`` becomes True once SIGTERM arrives."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        del frame
        logging.warning("received signal %d: stopping after this epoch's checkpoint", signum)
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested

    def __enter__(self) -> TerminationRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
