"""One writer for the metrics of a run: ``metrics.jsonl`` and TensorBoard event files.

Each record is one line of JSON ``{"epoch": e, "step": s, "<group>/<name>": value, ...}``;
floats are written exactly; a line that is not a record (damaged, or cut short by a kill)
is skipped and reported, and the records after it are kept. TensorBoard events are
written with tensorboardX (no TensorFlow). On resume from the checkpoint of epoch ``e``,
records after ``e`` (written by the interrupted process after its last checkpoint) are
dropped first, so the file ends up as if the run had never stopped; TensorBoard purges
those steps too.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from absl import logging

from vae_jax.rundir.files import DAMAGED_METRICS_FILE, METRICS_FILE, TENSORBOARD_DIR

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

        self._tensorboard = SummaryWriter(
            str(self.workdir / TENSORBOARD_DIR), purge_step=resume_step + 1 if kept else None
        )

    def write(self, epoch: int, step: int, metrics: dict) -> dict:
        record = {
            "epoch": int(epoch),
            "step": int(step),
            **{k: _plain(v) for k, v in metrics.items()},
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for key, value in record.items():
            if key not in ("epoch", "step") and isinstance(value, float) and math.isfinite(value):
                self._tensorboard.add_scalar(key, value, global_step=int(step))
        self._tensorboard.flush()
        return record

    def close(self) -> None:
        self._tensorboard.close()


def _plain(value):
    """Python scalars for JSON (numpy/JAX scalars -> float/int)."""
    if isinstance(value, (int, str, bool)) or value is None:
        return value
    return float(value)
