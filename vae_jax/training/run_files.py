"""The files of one run in its workdir, shared by single runs and seed sweeps.

``config.json`` and ``manifest.json`` at the start (a resume appends to the manifest),
``metrics.jsonl`` and TensorBoard events per epoch, ``checkpoints/`` every few epochs,
``report.json`` at the end. Only the primary process writes files; every process takes
part in checkpoint saves (orbax coordinates them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np
from absl import logging

from vae_jax import manifest, networks, rng
from vae_jax.errors import ConfigError, DataError, NonFiniteError
from vae_jax.training import checkpointing, resume, summaries
from vae_jax.training.metrics_writer import MetricsWriter, read_metrics
from vae_jax.training.step import param_norm

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.json"
CHECKPOINT_DIR = "checkpoints"


def check_workdir(workdir: Path, config) -> None:
    """Fails (before anything is written) if ``workdir`` cannot hold or resume this run."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir={workdir} exists and is not a directory")
    if (workdir / CONFIG_FILE).exists():
        changed = resume.check_resumable(manifest.read_json(workdir / CONFIG_FILE), config)
        if changed:
            logging.info("resuming %s with changed fields: %s", workdir, ", ".join(changed))


class _NoMetrics:
    """Stands in for the metrics writer on processes that do not write."""

    def write(self, epoch, step, metrics):
        return {"epoch": epoch, "step": step, **metrics}

    def close(self):
        pass


class RunFiles:
    """Reads and writes the files of one run. See the module docstring."""

    def __init__(
        self, workdir: Path, config, data_record: dict, *, primary: bool = True, label: str = ""
    ):
        self.workdir = Path(workdir).absolute()
        self.config = config
        self.primary = primary
        self.label = label  # e.g. "seed 3" in a sweep, for messages
        self._check_same_data(data_record)
        if primary:
            self._write_start(data_record)
        self.checkpointer = checkpointing.Checkpointer(
            self.workdir / CHECKPOINT_DIR, config.training.keep_checkpoints
        )
        self.writer = None
        self.last_saved_epoch = 0

    def _check_same_data(self, data_record: dict) -> None:
        path = self.workdir / MANIFEST_FILE
        if not path.exists():
            return
        recorded = manifest.read_json(path)["data"]["fingerprint_sha256"]
        if recorded != data_record["fingerprint_sha256"]:
            raise DataError(
                f"cannot resume {self.workdir}: the data differ from the run's (sha256 "
                f"{recorded} recorded, {data_record['fingerprint_sha256']} now)"
            )

    def _write_start(self, data_record: dict) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_json = resume.config_as_json(self.config)
        if not (self.workdir / CONFIG_FILE).exists():
            manifest.write_json(self.workdir / CONFIG_FILE, config_json)
            manifest.write_json(
                self.workdir / MANIFEST_FILE, manifest.make_manifest(self.config, data_record)
            )
            return
        recorded = manifest.read_json(self.workdir / MANIFEST_FILE)
        recorded.setdefault("resumes", []).append(
            {
                "time": manifest.now(),
                "command": sys.argv,
                "environment_differences": manifest.environment_differences(
                    recorded["environment"], manifest.environment()
                ),
            }
        )
        manifest.write_json(self.workdir / MANIFEST_FILE, recorded)
        manifest.write_json(self.workdir / CONFIG_FILE, config_json)

    def restore(self, initial_state, *, epoch: int | None = None, steps_per_epoch: int = 0):
        """``(state, epoch)``: the newest valid checkpoint (or the one of ``epoch``), else
        ``(initial_state, 0)``. Starts the metrics writer at the restored epoch."""
        if epoch is None:
            restored = self.checkpointer.restore_latest(initial_state, set_aside_damaged=True)
            if restored is None:
                state, start_epoch = initial_state, 0
            else:
                _, state, record = restored
                start_epoch = self._check_record(record)
        elif epoch == 0:
            state, start_epoch = initial_state, 0
        else:
            state, record = self.checkpointer.restore(epoch * steps_per_epoch, initial_state)
            start_epoch = self._check_record(record)
        self.last_saved_epoch = start_epoch
        if self.writer is not None:  # restored again (a sweep stepping back to a common epoch)
            self.writer.close()
        self.writer = (
            MetricsWriter(self.workdir, resume_epoch=start_epoch, resume_step=int(state.step))
            if self.primary
            else _NoMetrics()
        )
        if start_epoch:
            logging.info("%s: resuming after epoch %d", self.workdir, start_epoch)
        return state, start_epoch

    def _check_record(self, record: dict) -> int:
        if record["seed"] != self.config.seed:
            raise ConfigError(
                f"checkpoint of epoch {record['epoch']} in {self.workdir} was written with "
                f"seed {record['seed']}, not {self.config.seed}"
            )
        return int(record["epoch"])

    def end_epoch(
        self,
        epoch: int,
        first_step: int,
        step_metrics,
        state,
        validate,
        seconds: float,
        *,
        save: bool = False,
        seeds_in_program: int = 1,
    ) -> dict:
        """Everything a run does after a compiled epoch: stops on a non-finite loss, writes
        the epoch's metrics, and saves a checkpoint when due (or when ``save``).

        ``seconds`` is the wall time of the program's epoch; when it trained
        ``seeds_in_program`` seeds (a sweep), examples per second count all of them.
        """
        self._stop_if_not_finite(step_metrics, epoch, first_step)
        metrics = epoch_metrics(step_metrics, state.params, validate, seconds)
        if seeds_in_program > 1:
            metrics["time/examples_per_second"] *= seeds_in_program
            metrics["time/seeds_in_program"] = seeds_in_program
        self.writer.write(epoch, int(state.step), metrics)
        if save or self._checkpoint_due(epoch):
            self.save(epoch, state)
        return metrics

    def save(self, epoch: int, state) -> None:
        record = {
            "epoch": int(epoch),
            "step": int(state.step),
            "seed": int(self.config.seed),
            "root_key_data": np.asarray(
                jax.random.key_data(rng.root_key(self.config.seed))
            ).tolist(),
        }
        self.checkpointer.save(int(state.step), state, record)
        self.last_saved_epoch = epoch

    def _checkpoint_due(self, epoch: int) -> bool:
        every = self.config.training.checkpoint_every_epochs
        return epoch % every == 0 or epoch == self.config.training.num_epochs

    def _stop_if_not_finite(self, step_metrics, epoch: int, first_step: int) -> None:
        found = summaries.first_non_finite(step_metrics)
        if found is None:
            return
        index, name, value = found
        saved = self.checkpointer.steps()
        kept = (
            f"the last good checkpoint (step {saved[-1]}) is intact" if saved else "no checkpoint"
        )
        raise NonFiniteError(
            f"non-finite train/{name}={value} at epoch {epoch}, step {first_step + index + 1}"
            f"{f' ({self.label})' if self.label else ''}; training stopped, {kept}"
        )

    def finish(self, vae, data_record: dict, seconds: float, compile_seconds: float) -> dict:
        """Writes report.json with the final metrics; returns it."""
        records = read_metrics(self.workdir)
        final = records[-1] if records else {}
        with_validation = [r for r in records if "validation/elbo" in r]
        best = max(with_validation, key=lambda r: r["validation/elbo"]) if with_validation else None
        report = {
            "status": "complete",
            "seed": int(self.config.seed),
            "epochs_completed": final.get("epoch", 0),
            "steps": final.get("step", 0),
            "final": final,
            "best_validation": (
                {"epoch": best["epoch"], "validation/elbo": best["validation/elbo"]}
                if best
                else None
            ),
            "num_parameters": networks.num_parameters(jax.eval_shape(vae.init, jax.random.key(0))),
            "data": data_record,
            "time": {"train_seconds_this_process": seconds, "compile_seconds": compile_seconds},
        }
        if self.primary:
            existing = self.workdir / REPORT_FILE
            if existing.exists() and "evaluation" in manifest.read_json(existing):
                report["evaluation"] = manifest.read_json(existing)["evaluation"]
            manifest.write_json(self.workdir / REPORT_FILE, report)
        return report

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.checkpointer.close()


def epoch_metrics(step_metrics, params, validate, seconds: float) -> dict:
    """The metrics record of one epoch: training summaries, parameter norm, validation,
    wall-clock time."""
    metrics = summaries.summarize_epoch(step_metrics)
    metrics["train/param_norm"] = float(param_norm(params))
    metrics.update(validate(params))
    metrics["time/epoch_seconds"] = seconds
    metrics["time/examples_per_second"] = metrics["train/num_examples"] / seconds
    return metrics
