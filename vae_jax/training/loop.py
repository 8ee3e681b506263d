"""``train_and_evaluate(config, workdir)``: the training loop around the compiled epoch.

Order of work: check the config (and the dataset's metadata) and, if the workdir holds a
run, that the config may resume it -- all before anything is written; load the data;
write ``config.json`` and ``manifest.json``; restore the newest valid checkpoint; then
per epoch: one compiled ``lax.scan``, a non-finite check, the validation ELBO, one metrics
record, and a checkpoint every ``checkpoint_every_epochs`` epochs, at the end and on
SIGTERM. ``report.json`` holds the final metrics.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import config_checks, manifest, networks, rng, runtime
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError, DataError, NonFiniteError
from vae_jax.evaluation import per_example
from vae_jax.progress import Progress
from vae_jax.training import checkpointing, resume, summaries
from vae_jax.training.metrics_writer import MetricsWriter, read_metrics
from vae_jax.training.preemption import TerminationRequest
from vae_jax.training.step import TrainState, create_train_state, param_norm
from vae_jax.training.trainer import Trainer, make_trainer

CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
REPORT_FILE = "report.json"
CHECKPOINT_DIR = "checkpoints"


def check_before_start(config, workdir: Path) -> None:
    """Everything that can fail on bad input, before any file is written."""
    config_checks.check_all(config)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir={workdir} exists and is not a directory")
    if (workdir / CONFIG_FILE).exists():
        changed = resume.check_resumable(manifest.read_json(workdir / CONFIG_FILE), config)
        if changed:
            logging.info("resuming with changed fields: %s", ", ".join(changed))


def train_and_evaluate(config, workdir: str | Path) -> dict:
    """Trains the VAE ``config`` describes in ``workdir`` (resuming it if it holds a run)
    and returns the report (also written to ``report.json``)."""
    workdir = Path(workdir).absolute()
    check_before_start(config, workdir)
    runtime.apply_runtime_config(config)
    checking = (
        jax.debug_key_reuse(True) if config.runtime.debug_key_reuse else contextlib.nullcontext()
    )
    with checking:
        return _train(config, workdir)


def _train(config, workdir: Path) -> dict:
    dataset = load_dataset(config)
    _check_same_data_on_resume(workdir, dataset.record)
    trainer = make_trainer(
        config, dataset.image_shape, dataset.preprocessing, dataset.train.num_examples
    )
    streams = rng.make_streams(config.seed)
    _write_run_files(workdir, config, dataset.record, trainer)

    checkpointer = checkpointing.Checkpointer(
        workdir / CHECKPOINT_DIR, config.training.keep_checkpoints
    )
    try:
        state, start_epoch = _initial_or_restored_state(config, trainer, streams, checkpointer)
        report = _run_epochs(
            config, workdir, dataset, trainer, streams, checkpointer, state, start_epoch
        )
    finally:
        checkpointer.close()
    return report


def _write_run_files(workdir: Path, config, data_record: dict, trainer: Trainer) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    extra = {
        "num_parameters": networks.num_parameters(
            jax.eval_shape(trainer.vae.init, jax.random.key(0))
        ),
        "steps_per_epoch": trainer.steps_per_epoch,
    }
    if not (workdir / CONFIG_FILE).exists():
        manifest.write_json(workdir / CONFIG_FILE, resume.config_as_json(config))
        manifest.write_json(
            workdir / MANIFEST_FILE, manifest.make_manifest(config, data_record, extra)
        )
        return
    recorded = manifest.read_json(workdir / MANIFEST_FILE)
    recorded.setdefault("resumes", []).append(
        {
            "time": manifest.now(),
            "command": sys.argv,
            "environment_differences": manifest.environment_differences(
                recorded["environment"], manifest.environment()
            ),
        }
    )
    manifest.write_json(workdir / MANIFEST_FILE, recorded)
    manifest.write_json(workdir / CONFIG_FILE, resume.config_as_json(config))


def _check_same_data_on_resume(workdir: Path, data_record: dict) -> None:
    path = workdir / MANIFEST_FILE
    if not path.exists():
        return
    recorded = manifest.read_json(path)["data"]["fingerprint_sha256"]
    if recorded != data_record["fingerprint_sha256"]:
        raise DataError(
            f"cannot resume {workdir}: the data differ from the run's (sha256 fingerprints "
            f"{recorded} recorded, {data_record['fingerprint_sha256']} now)"
        )


def _initial_or_restored_state(config, trainer: Trainer, streams, checkpointer):
    initial = create_train_state(trainer.vae, trainer.optimizer, streams.init)
    restored = checkpointer.restore_latest(initial, set_aside_damaged=True)
    if restored is None:
        return initial, 0
    step, state, record = restored
    if record["seed"] != config.seed:
        raise ConfigError(f"checkpoint {step} was written with seed {record['seed']}")
    logging.info("resuming from the checkpoint of epoch %d (step %d)", record["epoch"], step)
    return state, int(record["epoch"])


def _compile_epoch(trainer: Trainer, state: TrainState, streams, images):
    started = time.perf_counter()
    compiled = (
        jax.jit(trainer.train_epoch, donate_argnums=0)
        .lower(state, streams, images, jnp.int32(0))
        .compile()
    )
    return compiled, time.perf_counter() - started


def _make_validation(trainer: Trainer, dataset, config, streams):
    if dataset.validation is None:
        return lambda params: {}
    vae, num_samples = trainer.vae, config.training.validation_num_samples
    evaluate_batch = per_example.make_batch_evaluator(
        lambda params, key, x: vae.elbo(params, key, x, num_samples=num_samples),
        dataset.preprocessing,
    )
    key = rng.eval_key(streams.eval, "validation")

    def validate(params) -> dict:
        out = per_example.evaluate_examples(
            evaluate_batch, params, key, dataset.validation.images, config.training.eval_batch_size
        )
        return {
            "validation/elbo": float(np.mean(out.elbo, dtype=np.float64)),
            "validation/log_likelihood": float(np.mean(out.log_likelihood, dtype=np.float64)),
            "validation/kl": float(np.mean(out.kl, dtype=np.float64)),
        }

    return validate


def _checkpoint_record(config, epoch: int, state: TrainState) -> dict:
    return {
        "epoch": int(epoch),
        "step": int(state.step),
        "seed": int(config.seed),
        "root_key_data": np.asarray(jax.random.key_data(rng.root_key(config.seed))).tolist(),
    }


def _run_epochs(config, workdir, dataset, trainer, streams, checkpointer, state, start_epoch):
    num_epochs = config.training.num_epochs
    images = dataset.train.images
    compiled_epoch, compile_seconds = _compile_epoch(trainer, state, streams, images)
    logging.info("compiled the training epoch in %.1f s", compile_seconds)
    validate = _make_validation(trainer, dataset, config, streams)
    writer = MetricsWriter(workdir, resume_epoch=start_epoch, resume_step=int(state.step))
    progress = Progress(num_epochs, unit="epoch", description="train", initial=start_epoch)
    last_saved = start_epoch
    terminated = False
    started = time.perf_counter()
    try:
        with TerminationRequest() as termination:
            for epoch in range(start_epoch + 1, num_epochs + 1):
                epoch_started = time.perf_counter()
                first_step = int(state.step)
                state, step_metrics = compiled_epoch(state, streams, images, jnp.int32(epoch - 1))
                step_metrics = jax.device_get(step_metrics)
                seconds = time.perf_counter() - epoch_started
                _stop_if_not_finite(step_metrics, epoch, first_step, checkpointer)
                metrics = summaries.summarize_epoch(step_metrics)
                metrics["train/param_norm"] = float(param_norm(state.params))
                metrics.update(validate(state.params))
                metrics["time/epoch_seconds"] = seconds
                metrics["time/examples_per_second"] = metrics["train/num_examples"] / seconds
                writer.write(epoch, int(state.step), metrics)
                progress.update(
                    epoch,
                    loss=metrics["train/loss"],
                    val_elbo=metrics.get("validation/elbo", float("nan")),
                )
                terminated = bool(termination)
                due = epoch % config.training.checkpoint_every_epochs == 0
                if due or epoch == num_epochs or terminated:
                    checkpointer.save(
                        int(state.step), state, _checkpoint_record(config, epoch, state)
                    )
                    last_saved = epoch
                if terminated:
                    logging.warning("stopped by SIGTERM after epoch %d; checkpoint saved", epoch)
                    break
    finally:
        writer.close()
        progress.close()
    if terminated:
        print(f"stopped by SIGTERM after epoch {last_saved}; resume with the same command")
        return {"status": "terminated", "epochs_completed": last_saved}
    report = _report(workdir, trainer, dataset, time.perf_counter() - started, compile_seconds)
    manifest.write_json(workdir / REPORT_FILE, report)
    _print_summary(workdir, report)
    return report


def _stop_if_not_finite(step_metrics, epoch: int, first_step: int, checkpointer) -> None:
    found = summaries.first_non_finite(step_metrics)
    if found is None:
        return
    index, name, value = found
    saved = checkpointer.steps()
    kept = f"the last good checkpoint (step {saved[-1]}) is intact" if saved else "no checkpoint"
    raise NonFiniteError(
        f"non-finite train/{name}={value} at epoch {epoch}, step {first_step + index + 1}; "
        f"training stopped, {kept}"
    )


def _report(workdir: Path, trainer: Trainer, dataset, seconds: float, compile_seconds: float):
    records = read_metrics(workdir)
    final = records[-1] if records else {}
    with_validation = [r for r in records if "validation/elbo" in r]
    best = max(with_validation, key=lambda r: r["validation/elbo"]) if with_validation else None
    return {
        "status": "complete",
        "epochs_completed": final.get("epoch", 0),
        "steps": final.get("step", 0),
        "final": final,
        "best_validation": (
            {"epoch": best["epoch"], "validation/elbo": best["validation/elbo"]} if best else None
        ),
        "num_parameters": networks.num_parameters(
            jax.eval_shape(trainer.vae.init, jax.random.key(0))
        ),
        "data": dataset.record,
        "time": {"train_seconds_this_process": seconds, "compile_seconds": compile_seconds},
    }


def _print_summary(workdir: Path, report: dict) -> None:
    final = report["final"]
    keys = ("train/elbo", "validation/elbo", "validation/log_likelihood", "validation/kl")
    shown = "  ".join(f"{k} {final[k]:.3f}" for k in keys if k in final)
    print(f"epoch {report['epochs_completed']}: {shown}")
    print(f"report: {workdir / REPORT_FILE}")
