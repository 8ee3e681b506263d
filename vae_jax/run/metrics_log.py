"""One writer for the metrics of a run: ``metrics.jsonl`` and TensorBoard event files.

Each record is one line of JSON ``{"epoch": e, "step": s, "<group>/<name>": value, ...}``;
floats are written exactly; a line that is not a record (damaged, or cut short by a kill)
is skipped and reported, and the records after it are kept. TensorBoard events are
written with tensorboardX (no TensorFlow). On resume from the checkpoint of epoch ``e``,
records after ``e`` (written by the interrupted process after its last checkpoint) are
dropped first, so the file ends up as if the run had never stopped; the TensorBoard event
files are rewritten to hold the events of the kept records only (each once), and each
(re)start writes its events to a file of its own, so the curves TensorBoard shows agree
with ``metrics.jsonl`` after any kill.
"""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path

from absl import logging

from vae_jax.run.files import (
    DAMAGED_METRICS_FILE,
    METRICS_FILE,
    TENSORBOARD_DIR,
    unwritable,
    user_fixable,
)

TIMING_PREFIX = "time/"  # wall-clock metrics: excluded from reproducibility comparisons


def read_records(workdir: str | Path) -> tuple[list[dict], list[tuple[int, str]]]:
    """The records of ``metrics.jsonl``, and ``(line number, text)`` of every line that is
    not one (cut short by a kill, or damaged): those are skipped, never a reason to drop
    the records after them."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return [], []
    records, damaged = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            records.append(record)
        else:
            damaged.append((number, line))
    return records, damaged


def read_metrics(workdir: str | Path) -> list[dict]:
    """Every readable record of ``metrics.jsonl`` (an empty list if there is none); lines
    that are not records are skipped and reported in one warning."""
    records, damaged = read_records(workdir)
    if damaged:
        logging.warning(
            "%s: skipped %d line(s) that are not metric records (line %s)",
            Path(workdir) / METRICS_FILE,
            len(damaged),
            ", ".join(str(number) for number, _ in damaged),
        )
    return records


def without_timing(record: dict) -> dict:
    """A record without its wall-clock fields, for comparing runs."""
    return {k: v for k, v in record.items() if not k.startswith(TIMING_PREFIX)}


def _event_records(path: Path) -> list[bytes]:
    """The framed records of a TensorBoard event file (TFRecord: length, its CRC, payload,
    its CRC), whole; a record cut short by a kill ends the list."""
    data = path.read_bytes()
    records, offset = [], 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 12 + length + 4
        if end > len(data):
            break
        records.append(data[offset:end])
        offset = end
    return records


def trim_event_files(logdir: Path, steps: set[int]) -> set[tuple[str, int]]:
    """Rewrites the event files in ``logdir`` so that their scalars are those at ``steps``
    (the kept records' steps), each (tag, step) once, from the newest file that has it:
    events past the restored checkpoint, of damaged records or of an earlier pass over
    the same steps are dropped. A file left without scalars is removed. Returns the
    (tag, step) pairs the files still hold."""
    from tensorboardX.proto import event_pb2

    paths = sorted(logdir.glob("events.out.tfevents.*")) if logdir.exists() else []
    parsed = []  # (path, [(record bytes, event)])
    for path in paths:
        events = []
        for record in _event_records(path):
            event = event_pb2.Event()
            try:
                event.ParseFromString(record[12:-4])
            except Exception:  # a damaged record: dropped like the rest
                continue
            events.append((record, event))
        parsed.append((path, events))
    newest = {}  # (tag, step) -> (file index, event index) of its last occurrence
    for i, (_, events) in enumerate(parsed):
        for j, (_, event) in enumerate(events):
            for value in event.summary.value:
                newest[(value.tag, event.step)] = (i, j)
    for i, (path, events) in enumerate(parsed):
        kept, scalars = [], 0
        for j, (record, event) in enumerate(events):
            if event.HasField("summary"):
                if event.step not in steps or any(
                    newest[(v.tag, event.step)] != (i, j) for v in event.summary.value
                ):
                    continue
                scalars += 1
            elif event.HasField("session_log"):  # an older purge marker: nothing to purge
                continue
            kept.append(record)
        if not scalars:
            path.unlink()
        elif b"".join(kept) != path.read_bytes():  # events dropped, or a tail cut short
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(b"".join(kept))
            os.replace(tmp, path)
    return {pair for pair in newest if pair[1] in steps}


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricsWriter:
    """Appends per-epoch records; only the process that owns the run should create one."""

    def __init__(self, workdir: str | Path, *, resume_epoch: int, resume_step: int):
        self.workdir = Path(workdir)
        self.path = self.workdir / METRICS_FILE
        records, damaged = read_records(self.workdir)
        if damaged:  # kept for inspection, out of the log
            with open(self.workdir / DAMAGED_METRICS_FILE, "a") as f:
                f.writelines(f"line {number}: {text}\n" for number, text in damaged)
            logging.warning(
                "%s: %d line(s) that are not metric records (line %s) moved to %s",
                self.path, len(damaged), ", ".join(str(n) for n, _ in damaged),
                DAMAGED_METRICS_FILE,
            )  # fmt: skip
        # Records after the restored checkpoint were written by the process that stopped.
        kept = [r for r in records if r["epoch"] <= resume_epoch]
        _write_atomically(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        from tensorboardX import SummaryWriter

        del resume_step  # the kept records name their steps
        held = trim_event_files(self.workdir / TENSORBOARD_DIR, {r["step"] for r in kept})
        # A file of this (re)start's own: tensorboardX names it by the time to the second
        # and the host and opens it with "wb"; the pid and nanoseconds keep a restart in
        # the same second from overwriting an earlier file, and keep the names in order.
        self._tensorboard = SummaryWriter(
            str(self.workdir / TENSORBOARD_DIR),
            filename_suffix=f".{os.getpid()}.{time.time_ns()}",
        )
        for record in kept:  # a kept record whose events a kill lost: written again
            self._add_scalars(record, skip=held)
        self._tensorboard.flush()

    def write(self, epoch: int, step: int, metrics: dict) -> dict:
        record = {
            "epoch": int(epoch),
            "step": int(step),
            **{k: _plain(v) for k, v in metrics.items()},
        }
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:  # a line cut short is set aside on resume
            raise (unwritable(error, self.path) if user_fixable(error) else error) from None
        self._add_scalars(record)
        self._tensorboard.flush()
        return record

    def _add_scalars(self, record: dict, skip=frozenset()) -> None:
        step = int(record["step"])
        for key, value in record.items():
            if (
                key not in ("epoch", "step")
                and isinstance(value, float)
                and math.isfinite(value)
                and (key, step) not in skip
            ):
                self._tensorboard.add_scalar(key, value, global_step=step)

    def close(self) -> None:
        self._tensorboard.close()


def _plain(value):
    """Python scalars for JSON (numpy/JAX scalars -> float/int)."""
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return float(value)
