"""``train_and_evaluate(config, workdir)``: the training loop around the compiled epoch.

Order of work: check the config (and the dataset's metadata) and, if the workdir holds a
run, that the config may resume it -- all before anything is written; load the data;
write ``config.json`` and ``manifest.json``; restore the newest valid checkpoint; then
per epoch: one compiled ``lax.scan`` (data parallel over ``runtime.num_devices``), a
non-finite check, the validation ELBO, one metrics record, and a checkpoint every
``checkpoint_every_epochs`` epochs, at the end and on SIGTERM. ``report.json`` holds the
final metrics.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax import config_checks, parallel, rng, runtime
from vae_jax.data import load_dataset
from vae_jax.evaluation import per_example
from vae_jax.progress import Progress
from vae_jax.training import run_files
from vae_jax.training.preemption import TerminationRequest
from vae_jax.training.run_files import REPORT_FILE, RunFiles
from vae_jax.training.step import create_train_state
from vae_jax.training.trainer import Trainer, make_trainer


def check_before_start(config, workdir: Path):
    """Everything that can fail on bad input, before any file is written; returns the
    device mesh."""
    config_checks.check_all(config)
    mesh = parallel.make_mesh(config.runtime.num_devices)
    parallel.check_divisible(config.training.batch_size, mesh)
    run_files.check_workdir(workdir, config)
    return mesh


def train_and_evaluate(config, workdir: str | Path, *, stop_after_epoch: int | None = None):
    """Trains the VAE ``config`` describes in ``workdir`` (resuming it if it holds a run)
    and returns the report (also written to ``report.json``).

    ``stop_after_epoch`` ends training early, with a checkpoint, as if interrupted there
    (the learning-rate schedule still spans ``training.num_epochs``).
    """
    workdir = Path(workdir).absolute()
    runtime.apply_runtime_config(config)
    mesh = check_before_start(config, workdir)
    checking = (
        jax.debug_key_reuse(True) if config.runtime.debug_key_reuse else contextlib.nullcontext()
    )
    with checking:
        return _train(config, workdir, mesh, stop_after_epoch)


def _train(config, workdir: Path, mesh, stop_after_epoch: int | None) -> dict:
    dataset = load_dataset(config)
    parallel_run = mesh.devices.size > 1
    trainer = make_trainer(
        config,
        dataset.image_shape,
        dataset.preprocessing,
        dataset.train.num_examples,
        batch_sharding=parallel.sharded_along(mesh, parallel.DATA_AXIS) if parallel_run else None,
    )
    streams = rng.make_streams(config.seed)
    files = RunFiles(workdir, config, dataset.record, primary=parallel.is_primary())
    try:
        initial = create_train_state(trainer.vae, trainer.optimizer, streams.init)
        if parallel_run:
            initial = parallel.put_tree(initial, parallel.replicated(mesh))
        state, start_epoch = files.restore(initial)
        images = dataset.train.images
        if parallel_run:
            images = parallel.put(images, parallel.replicated(mesh))
        return _run_epochs(
            config, files, dataset, trainer, streams, state, start_epoch, images, stop_after_epoch
        )
    finally:
        files.close()


def compile_epoch(epoch_fn, state, streams, images):
    """``epoch_fn(state, streams, images, epoch)`` compiled ahead of time, once per run,
    with the state donated; returns it and the seconds compiling took."""
    started = time.perf_counter()
    compiled = (
        jax.jit(epoch_fn, donate_argnums=0).lower(state, streams, images, jnp.int32(0)).compile()
    )
    return compiled, time.perf_counter() - started


def make_validation(trainer: Trainer, dataset, config):
    """``validate(params, streams) -> metrics``: the validation ELBO with the run's fixed
    validation keys (from its ``eval`` stream: the same draws every epoch). Compiled once,
    for any number of runs of the same model."""
    if dataset.validation is None:
        return lambda params, streams: {}
    vae, num_samples = trainer.vae, config.training.validation_num_samples
    evaluate_batch = per_example.make_batch_evaluator(
        lambda params, key, x: vae.elbo(params, key, x, num_samples=num_samples),
        dataset.preprocessing,
    )

    def validate(params, streams) -> dict:
        key = rng.eval_key(streams.eval, "validation")
        out = per_example.evaluate_examples(
            evaluate_batch, params, key, dataset.validation.images, config.training.eval_batch_size
        )
        return {
            "validation/elbo": float(np.mean(out.elbo, dtype=np.float64)),
            "validation/log_likelihood": float(np.mean(out.log_likelihood, dtype=np.float64)),
            "validation/kl": float(np.mean(out.kl, dtype=np.float64)),
        }

    return validate


def _run_epochs(
    config, files, dataset, trainer, streams, state, start_epoch, images, stop_after_epoch
):
    num_epochs = config.training.num_epochs
    last_epoch = min(num_epochs, stop_after_epoch or num_epochs)
    compiled_epoch, compile_seconds = compile_epoch(trainer.train_epoch, state, streams, images)
    logging.info("compiled the training epoch in %.1f s", compile_seconds)
    validation = make_validation(trainer, dataset, config)
    validate = lambda params: validation(params, streams)
    progress = Progress(num_epochs, unit="epoch", description="train", initial=start_epoch)
    terminated = False
    started = time.perf_counter()
    try:
        with TerminationRequest() as termination:
            for epoch in range(start_epoch + 1, last_epoch + 1):
                epoch_started = time.perf_counter()
                first_step = int(state.step)
                state, step_metrics = compiled_epoch(state, streams, images, jnp.int32(epoch - 1))
                step_metrics = jax.device_get(step_metrics)
                seconds = time.perf_counter() - epoch_started
                terminated = bool(termination)
                metrics = files.end_epoch(
                    epoch, first_step, step_metrics, state, validate, seconds,
                    save=terminated or epoch == last_epoch,
                )  # fmt: skip
                progress.update(
                    epoch,
                    loss=metrics["train/loss"],
                    val_elbo=metrics.get("validation/elbo", float("nan")),
                )
                if terminated:
                    logging.warning("stopped by SIGTERM after epoch %d; checkpoint saved", epoch)
                    break
    finally:
        progress.close()
    if terminated or last_epoch < num_epochs:
        reason = "stopped by SIGTERM" if terminated else "stopped as asked"
        print(f"{reason} after epoch {files.last_saved_epoch}; resume with the same command")
        return {"status": "stopped", "epochs_completed": files.last_saved_epoch}
    report = files.finish(
        trainer.vae, dataset.record, time.perf_counter() - started, compile_seconds
    )
    _print_summary(files.workdir, report)
    return report


def _print_summary(workdir: Path, report: dict) -> None:
    final = report["final"]
    keys = ("train/elbo", "validation/elbo", "validation/log_likelihood", "validation/kl")
    shown = "  ".join(f"{k} {final[k]:.3f}" for k in keys if k in final)
    print(f"epoch {report['epochs_completed']}: {shown}")
    print(f"report: {workdir / REPORT_FILE}")
