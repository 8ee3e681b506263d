"""``RunDirectory``: the files of one run in its workdir, for single runs and sweep seeds.

``config.json`` and ``manifest.json`` at the start (a resume appends to the manifest),
``metrics.jsonl`` and TensorBoard events per epoch, ``checkpoints/`` when the loop says
so, ``report.json`` at the end. Only the primary process writes files; every process takes
part in checkpoint saves (orbax coordinates them). What to write and when is decided by
the training loop (``vae_jax.training.fit``), not here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from absl import logging

from vae_jax.core import rng
from vae_jax.errors import ConfigError, DataError
from vae_jax.run import files, manifest
from vae_jax.run.checkpointing import Checkpointer
from vae_jax.run.metrics_log import MetricsWriter


class _NoMetrics:
    """Stands in for the metrics writer on processes that do not write."""

    def write(self, epoch, step, metrics):
        return {"epoch": epoch, "step": step, **metrics}

    def close(self):
        pass


class RunDirectory:
    """Paths, JSON files, checkpoints and the metrics log of the run with ``seed`` in
    ``workdir``. ``label`` (e.g. "seed 3" in a sweep) goes into messages."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        seed: int,
        keep_checkpoints: int,
        primary: bool = True,
        label: str = "",
    ):
        self.path = Path(workdir).absolute()
        self.seed = int(seed)
        self.primary = primary
        self.label = label
        self._keep_checkpoints = keep_checkpoints
        self._checkpoints = None  # created on first use: nothing is written before the start
        self._best_checkpoints = None  # early stopping's (files.BEST_CHECKPOINT_DIR)
        self.metrics = None  # opened by `begin`, at the restored epoch
        self._damaged_steps: list[int] = []  # newer checkpoints that failed to restore

    @property
    def checkpoints(self) -> Checkpointer:
        if self._checkpoints is None:
            self._checkpoints = Checkpointer(
                self.path / files.CHECKPOINT_DIR, self._keep_checkpoints
            )
        return self._checkpoints

    @property
    def best_checkpoints(self) -> Checkpointer:
        """Early stopping's checkpoints of the best validation epoch: the newest is the best
        so far; older ones are removed once a regular checkpoint no longer needs them."""
        if self._best_checkpoints is None:
            self._best_checkpoints = Checkpointer(self.path / files.BEST_CHECKPOINT_DIR, None)
        return self._best_checkpoints

    def file(self, name: str) -> Path:
        return self.path / name

    def check_same_data(self, data_record: dict) -> None:
        """Fails if the run in this directory was trained on other data (resume)."""
        if not files.run_started(self.path):
            return
        recorded = files.recorded_data_record(self.path)
        difference = files.data_difference(
            recorded["fingerprint_sha256"], data_record["fingerprint_sha256"]
        ) or files.protocol_difference(recorded, data_record)
        if difference:
            raise DataError(f"cannot resume {self.path}: {difference}")

    def restore(self, initial_state, *, epoch: int | None = None, steps_per_epoch: int = 0):
        """``(state, epoch)``: the newest valid checkpoint (or the one of ``epoch``), else
        ``(initial_state, 0)``. Only reads: a run none of whose checkpoints restores is
        refused here, before ``begin`` writes anything (a refused command changes nothing).
        Checkpoints newer than the restored one that failed are set aside by ``begin``."""
        if epoch is None:
            restored = self.checkpoints.restore_newest(initial_state)
            if restored is None:
                state, start_epoch, self._damaged_steps = initial_state, 0, []
            else:
                _, state, record, self._damaged_steps = restored
                start_epoch = self._check_record(record)
        elif epoch == 0:
            state, start_epoch = initial_state, 0
        else:
            state, record = self.checkpoints.restore(epoch * steps_per_epoch, initial_state)
            start_epoch = self._check_record(record)
        return state, start_epoch

    def begin(
        self,
        config_json: dict,
        run_manifest: dict,
        *,
        start_epoch: int,
        start_step: int,
        segment: dict | None = None,
    ) -> None:
        """The writes of a (re)start, once everything that can refuse it has passed:
        ``config.json`` and ``manifest.json`` of a new run (on a resume, the new config
        and one more entry in the manifest's ``resumes``, with the epoch it starts after
        and ``segment``, the fields the user chose to change from here on); damaged
        checkpoints set aside; the metrics log opened at ``start_epoch`` (records and
        TensorBoard events after it, written by a process that stopped, are dropped)."""
        if self.primary:
            self._write_start(config_json, run_manifest, start_epoch, segment)
            if self._damaged_steps:
                self.checkpoints.set_aside(self._damaged_steps)
                self._damaged_steps = []
            self._drop_best_after(start_step)
        if self.metrics is not None:  # begun again
            self.metrics.close()
        self.metrics = (
            MetricsWriter(self.path, resume_epoch=start_epoch, resume_step=start_step)
            if self.primary
            else _NoMetrics()
        )
        if start_epoch:
            logging.info("%s: resuming after epoch %d", self.path, start_epoch)

    def _write_start(self, config_json, run_manifest, start_epoch, segment) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if not files.run_started(self.path):  # config.json last: it marks a complete start
            files.write_json(self.file(files.MANIFEST_FILE), run_manifest)
            files.write_json(self.file(files.CONFIG_FILE), config_json)
            return
        recorded = files.read_json(self.file(files.MANIFEST_FILE))
        git = manifest.git_state()
        entry = {
            "time": manifest.now(),
            "command": sys.argv,
            "git": git,  # the code this segment trains with (reproduce warns if dirty)
            "environment_differences": manifest.environment_differences(
                recorded["environment"], manifest.environment()
            )
            + manifest.code_differences(recorded.get("git"), git),
            "from_epoch": start_epoch,  # the epoch this resume (and a segment) begins after
        }
        if segment:
            entry.update(changed_by_opt_in=segment, config=config_json)
        recorded.setdefault("resumes", []).append(entry)
        files.write_json(self.file(files.MANIFEST_FILE), recorded)
        files.write_json(self.file(files.CONFIG_FILE), config_json)

    def _check_record(self, record: dict) -> int:
        if record["seed"] != self.seed:
            raise ConfigError(
                f"checkpoint of epoch {record['epoch']} in {self.path} was written with "
                f"seed {record['seed']}, not {self.seed}"
            )
        return int(record["epoch"])

    def save_best_checkpoint(self, epoch: int, state) -> None:
        """The checkpoint of the best validation epoch so far (early stopping)."""
        self.best_checkpoints.save(int(state.step), state, self._checkpoint_record(epoch, state))

    def save_checkpoint(self, epoch: int, state) -> None:
        """The checkpoint of ``epoch`` (numbered by the state's global step); the best
        checkpoints older than the newest are no longer needed by a resume from it."""
        self.checkpoints.save(int(state.step), state, self._checkpoint_record(epoch, state))
        if (self.path / files.BEST_CHECKPOINT_DIR).exists():
            for step in self.best_checkpoints.steps()[:-1]:
                self.best_checkpoints.delete(step)

    def _drop_best_after(self, step: int) -> None:
        """A resume from ``step``: best checkpoints taken after it are recomputed (the same
        bits) by the resumed run, or not reached at all (a shorter run): removed."""
        if (self.path / files.BEST_CHECKPOINT_DIR).exists():
            for later in [s for s in self.best_checkpoints.steps() if s > step]:
                self.best_checkpoints.delete(later)

    def _checkpoint_record(self, epoch: int, state) -> dict:
        return {
            "epoch": int(epoch),
            "step": int(state.step),
            "seed": self.seed,
            "root_key_data": np.asarray(jax.random.key_data(rng.root_key(self.seed))).tolist(),
        }

    def write_report(self, report: dict) -> dict:
        """Writes ``report.json``, keeping an evaluation already merged into it (marked
        ``stale`` in it and in ``report.md`` if it describes an older checkpoint); a
        damaged ``report.json`` is set aside and written anew. Returns what was written."""
        if not self.primary:
            return report
        existing = self.file(files.REPORT_FILE)
        files.set_aside_if_damaged(existing, "written anew from metrics.jsonl; evaluate again")
        if existing.exists() and "evaluation" in files.read_json(existing):
            evaluation = files.read_json(existing)["evaluation"]
            evaluated = evaluation.get("checkpoint", {}).get("step")
            # the checkpoint evaluation reads: the newest, or early stopping's best
            current = report.get("early_stopping", {}).get("best_step", report.get("steps"))
            if evaluated != current:  # evaluated while training went on
                evaluation = {
                    **evaluation,
                    "stale": f"evaluates the checkpoint of step {evaluated}; training has since "
                    f"reached step {report.get('steps')}: evaluate again",
                }
                files.mark_markdown_stale(self.file(files.REPORT_MARKDOWN), evaluation["stale"])
            report = {**report, "evaluation": evaluation}
        files.write_json(existing, report)
        return report

    def write_failure(self, reason: str, *, epoch: int, step: int) -> None:
        """Records in ``report.json`` that the run stopped on a non-finite value (a run of
        a sweep: the others go on); a rerun of the sweep leaves it as it is unless asked."""
        if self.primary:
            files.write_json(
                self.file(files.REPORT_FILE),
                {"status": "failed", "reason": reason, "epochs_completed": epoch, "steps": step},
            )

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self._checkpoints is not None:
            self._checkpoints.close()
        if self._best_checkpoints is not None:
            self._best_checkpoints.close()
