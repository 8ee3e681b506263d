"""``train_and_evaluate(config, workdir)``: one run, from a config to ``report.json``.

Order of work: check the config (and the dataset's metadata) and, if the workdir holds a
run, that the config may resume it -- all before anything is written; load the data;
take the workdir's lock (one process owns a workdir); then train it as a sweep's group of
one (``vae_jax.sweep.group.train_group`` with ``strategies.SINGLE``: no run axis, so the
compiled epoch is the single-run epoch), data parallel over ``runtime.num_devices``: it
restores the newest valid checkpoint (reading only: a run that cannot be resumed is
refused with nothing changed), writes ``config.json`` and ``manifest.json``, compiles the
epoch and runs the one training loop (``vae_jax.training.fit``); a non-finite value
stops it (``NonFiniteError``). ``report.json`` holds the final metrics.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import jax

from vae_jax import config_checks
from vae_jax.data import load_dataset
from vae_jax.run import files, parallel, runtime
from vae_jax.run.lock import ownership
from vae_jax.sweep import strategies
from vae_jax.sweep.group import Member, train_group
from vae_jax.sweep.group import early_stopping_of as early_stopping_of  # its old path
from vae_jax.training import resume


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
    trained = train_group(
        config,
        dataset,
        [Member(config, workdir, label="")],
        strategies.SINGLE,
        mesh=mesh,
        primary=parallel.is_primary(),
        isolate_failures=False,  # no other run to go on: a non-finite value stops it
        stop_after_epoch=stop_after_epoch,
        allow_change=allow_change,
        announce=announce,
    )
    if trained.status != "complete":
        return {"status": trained.status, "epochs_completed": trained.epochs_completed}
    (final,) = trained.reports
    if announce:
        _print_summary(workdir, final)
    return final


def _print_summary(workdir: Path, final: dict) -> None:
    metrics = final["final"]
    keys = ("train/elbo", "validation/elbo", "validation/log_likelihood", "validation/kl")
    shown = "  ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics)
    print(f"epoch {final['epochs_completed']}: {shown}")
    print(f"report: {workdir / files.REPORT_FILE}")
