"""SIGTERM and Ctrl-C (SIGINT) as a request to stop: the loop saves a checkpoint at the
next epoch boundary and returns (schedulers send SIGTERM before they kill a job). A second
signal exits at once: the saves are atomic, so this is as safe as a kill."""

from __future__ import annotations

import os
import signal
import threading

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TerminationRequest:
    """Context manager: ``bool(request)`` becomes True once SIGTERM or SIGINT arrives."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        if self.requested:
            logging.warning("received signal %d again: exiting now", signum)
            os._exit(128 + signum)
        logging.warning(
            "received signal %d: stopping after this epoch's checkpoint (again to exit now)",
            signum,
        )
        self.requested = True

    def __bool__(self) -> bool:
        return self.requested

    def __enter__(self) -> TerminationRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
