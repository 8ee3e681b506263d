"""Progress of long work: a bar on a terminal, plain log lines elsewhere (CI, files).

progress = Progress(total=20, unit="epoch", description="train")
progress.update(3, loss=251.2)      # absolute count done, and what to show beside it
progress.close()
"""

from __future__ import annotations

import sys
import time

from absl import logging


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Counts ``done`` out of ``total`` and estimates the time left from the rate so far."""

    def __init__(
        self,
        total: int,
        *,
        unit: str,
        description: str,
        initial: int = 0,
        log_every_seconds: float = 10.0,
        stream=None,
    ):
        self.total, self.unit, self.description = int(total), unit, description
        self.initial = self.done = int(initial)
        self._start = time.monotonic()
        self._last_log = -float("inf")
        self._log_every = log_every_seconds
        stream = stream or sys.stderr
        self._bar = None
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total, initial=self.initial, unit=unit, desc=description, file=stream
            )

    def seconds_left(self) -> float | None:
        progressed = self.done - self.initial
        if progressed <= 0:
            return None
        rate = (time.monotonic() - self._start) / progressed
        return rate * (self.total - self.done)

    def update(self, done: int, **postfix) -> None:
        previous, self.done = self.done, int(done)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)
            self._bar.update(self.done - previous)
            return
        now = time.monotonic()
        if now - self._last_log < self._log_every and self.done < self.total:
            return
        self._last_log = now
        left = self.seconds_left()
        parts = [f"{self.description}: {self.unit} {self.done}/{self.total}"]
        parts += [f"{key} {_short(value)}" for key, value in postfix.items()]
        parts.append(f"elapsed {format_duration(now - self._start)}")
        if left is not None:
            parts.append(f"{format_duration(left)} left")
        logging.info(" | ".join(parts))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
