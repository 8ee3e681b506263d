"""``train_and_evaluate(config, workdir)``: one run, from a config to ``report.json``.

Order of work: check the config (and the dataset's metadata) and, if the workdir holds a
run, that the config may resume it -- all before anything is written; load the data;
take the workdir's lock (one process owns a workdir); build the program
(``vae_jax.training.program``) and the validation evaluator; restore the newest valid
checkpoint (reading only: a run that cannot be resumed is refused with nothing changed);
write ``config.json`` and ``manifest.json``; compile the epoch; then the one training loop
(``vae_jax.training.fit``), data parallel over ``runtime.num_devices``; ``report.json``
holds the final metrics.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax
from absl import logging

from vae_jax import config_checks
from vae_jax.core import rng
from vae_jax.data import load_dataset
from vae_jax.evaluation.validation import make_validation
from vae_jax.run import files, parallel, runtime
from vae_jax.run.lock import ownership
from vae_jax.run.metrics_log import read_metrics
from vae_jax.training import fit, resume, warmups
from vae_jax.training.early_stopping import EarlyStopping
from vae_jax.training.program import build_program


def check_before_start(config):
    """Everything in the config that can fail, before any file is written; returns the
    device mesh."""
    config_checks.check_all(config)
    mesh = parallel.make_mesh(config.runtime.num_devices)
    parallel.check_divisible(config.training.batch_size, mesh)
    return mesh


def key_reuse_checking(config):
    """``jax.debug_key_reuse`` when ``runtime.debug_key_reuse``, else nothing."""
    if config.runtime.debug_key_reuse:
        return jax.debug_key_reuse(True)
    return contextlib.nullcontext()


def train_and_evaluate(
    config,
    workdir: str | Path,
    *,
    stop_after_epoch: int | None = None,
    allow_change: tuple[str, ...] = (),
    announce: bool = True,
):
    """Trains the VAE ``config`` describes in ``workdir`` (resuming it if it holds a run)
    and returns the report (also written to ``report.json``).

    ``stop_after_epoch`` ends training early, with a checkpoint, as if interrupted there
    (the learning-rate schedule still spans ``training.num_epochs``). ``allow_change``
    names optimizer or objective fields that may differ from the run being resumed (a new
    segment, recorded in the manifest and replayed by ``reproduce``). ``announce=False``
    prints nothing about where the run stopped or its report (a re-run inside
    ``reproduce``, in a folder that is deleted afterwards).
    """
    workdir = files.workdir_path(workdir)
    runtime.apply_runtime_config(config)
    mesh = check_before_start(config)
    allow_change = resume.check_allow_change(allow_change, config)
    resume.check_workdir(workdir, config, allow_change)  # may this config resume what is there?
    with key_reuse_checking(config):
        dataset = load_dataset(config)  # only reads: a data error leaves nothing behind
        with ownership(workdir, "training", primary=parallel.is_primary()):
            return _train(config, dataset, workdir, mesh, stop_after_epoch, allow_change, announce)


def _train(config, dataset, workdir: Path, mesh, stop_after_epoch, allow_change, announce) -> dict:
    data_parallel = mesh.devices.size > 1
    program = build_program(
        config,
        image_shape=dataset.image_shape,
        preprocessing=dataset.preprocessing,
        num_train_examples=dataset.train.num_examples,
        batch_sharding=parallel.sharded_along(mesh, parallel.DATA_AXIS) if data_parallel else None,
    )
    validation = make_validation(
        program.vae,
        dataset,
        num_samples=config.training.validation_num_samples,
        batch_size=config.training.eval_batch_size,
    )
    streams = rng.make_streams(config.seed)
    for line in warmups.warmup_warnings(config, dataset.train.num_examples):
        logging.warning("%s", line)
    run = resume.open_run(workdir, config, dataset.record, primary=parallel.is_primary())
    try:
        initial = program.initial_state(streams.init)
        images = dataset.train.images
        if data_parallel:
            initial = parallel.put_tree(initial, parallel.replicated(mesh))
            images = parallel.put(images, parallel.replicated(mesh))
        state, start_epoch = run.restore(initial)  # only reads: a refusal changes nothing
        resume.start_run(
            run,
            config,
            dataset.record,
            start_epoch=start_epoch,
            start_step=int(state.step),
            allow_change=allow_change,
        )
        epoch_program, compile_seconds = program.compile(
            state, streams, images, program.hyperparameters
        )
        logging.info("compiled the training epoch in %.1f s", compile_seconds)
        stopping = early_stopping_of(run, config, start_epoch)
        result = fit.fit(
            epoch_program,
            state,
            streams,
            images,
            [run],
            validate=lambda params, _: validation(params, streams.eval),
            start_epoch=start_epoch,
            num_epochs=config.training.num_epochs,
            checkpoint_every_epochs=config.training.checkpoint_every_epochs,
            stop_after_epoch=stop_after_epoch,
            announce=announce,
            early_stopping=[stopping],
        )
        if result.status != "complete":
            return {"status": result.status, "epochs_completed": result.epochs_completed}
        final = fit.write_final_report(
            run, program.vae, dataset.record, result.train_seconds, compile_seconds, stopping
        )
    finally:
        run.close()
    if announce:
        _print_summary(workdir, final)
    return final


def early_stopping_of(run, config, start_epoch: int) -> EarlyStopping:
    """The run's early-stopping count, replayed from its records up to ``start_epoch``."""
    records = [r for r in read_metrics(run.path) if r.get("epoch", 0) <= start_epoch]
    return EarlyStopping.replay(
        records,
        patience=config.training.early_stopping_patience,
        kl_warmup_epochs=config.objective.kl_warmup_epochs,
    )


def _print_summary(workdir: Path, final: dict) -> None:
    metrics = final["final"]
    keys = ("train/elbo", "validation/elbo", "validation/log_likelihood", "validation/kl")
    shown = "  ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics)
    print(f"epoch {final['epochs_completed']}: {shown}")
    print(f"report: {workdir / files.REPORT_FILE}")
