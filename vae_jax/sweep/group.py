"""``train_group``: the one path that trains, checkpoints and resumes runs of one program.

A sweep's seeds, a grid's cells of equal shapes and a single run all train here: a single
run is a group of one with the ``SINGLE`` strategy (no run axis, so its compiled epoch is
the single-run epoch itself), data parallel over its mesh when that has several devices.
Order of work: open every run (reading only), restore each at the newest epoch all of
them have a checkpoint of (a refusal changes nothing), write the start files, compile,
then ``fit``; each run that completes gets its ``report.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from absl import logging

from vae_jax import hyperparameters
from vae_jax.core import rng
from vae_jax.data import Dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation.validation import make_validation
from vae_jax.run import files, parallel
from vae_jax.run.metrics_log import read_metrics
from vae_jax.sweep import strategies
from vae_jax.training import fit, resume, warmups
from vae_jax.training.early_stopping import EarlyStopping
from vae_jax.training.program import build_program


class Member(NamedTuple):
    """One run trained by a group's program: a seed (of a cell), or a single run."""

    config: Any  # the config of the single run it equals
    workdir: Path
    label: str  # "seed 3", "objective.beta=0.5, seed 3"; "" for a single run


class TrainedGroup(NamedTuple):
    """What training one program's runs leaves for their evaluation."""

    status: str  # "complete" or "stopped"
    epochs_completed: int
    states: Any  # final train states, stacked over runs (a single run's own)
    train_seconds: float
    failed: dict  # label -> why (a non-finite value stopped it; the others went on)
    reports: list  # each member's report.json when complete (None: failed or not done)


def early_stopping_of(run, config, start_epoch: int) -> EarlyStopping:
    """The run's early-stopping count, replayed from its records up to ``start_epoch``."""
    records = [r for r in read_metrics(run.path) if r.get("epoch", 0) <= start_epoch]
    return EarlyStopping.replay(
        records,
        patience=config.training.early_stopping_patience,
        kl_warmup_epochs=config.objective.kl_warmup_epochs,
    )


def _replicated_on(mesh):
    """Puts a pytree replicated on a data-parallel ``mesh`` (None or one device: as is)."""
    if mesh is None or mesh.devices.size == 1:
        return lambda tree: tree
    return lambda tree: parallel.put_tree(tree, parallel.replicated(mesh))


def _restore_common_epoch(runs, initial: list, steps_per_epoch: int) -> tuple[list, int]:
    """Every run restored at the newest epoch all of them have a checkpoint of (reading
    only: every run's checkpoint restores before any run's files are written); ``initial``
    holds each run's step 0."""
    restored = [run.restore(state) for run, state in zip(runs, initial, strict=True)]
    common = min(epoch for _, epoch in restored)
    states = []
    for run, state0, (state, epoch) in zip(runs, initial, restored, strict=True):
        if epoch != common:  # a kill between the runs' saves: step back to the common epoch
            state, _ = run.restore(state0, epoch=common, steps_per_epoch=steps_per_epoch)
        states.append(state)
    return states, common


def _start_runs(runs, members, states, start_epoch, data_record, allow_change) -> None:
    """The start files and metrics logs of every run, once all restored; checkpoints
    newer than the common epoch (a kill between the runs' saves) are set aside: they will
    be written again, bit for bit."""
    for run, member, state in zip(runs, members, states, strict=True):
        resume.start_run(
            run,
            member.config,
            data_record,
            start_epoch=start_epoch,
            start_step=int(state.step),
            allow_change=allow_change,
        )
        newer = [s for s in run.checkpoints.steps() if s > int(state.step)]
        if newer and run.primary:
            run.checkpoints.set_aside(newer, files.SUPERSEDED_CHECKPOINT_DIR)


def train_group(
    config,
    dataset: Dataset,
    members: list[Member],
    strategy: str,
    description: str = "train",
    *,
    mesh=None,
    primary: bool = True,
    isolate_failures: bool = True,
    stop_after_epoch: int | None = None,
    allow_change: tuple[str, ...] = (),
    announce: bool = True,
) -> TrainedGroup:
    """Trains (or resumes) runs whose configs compile to one program
    (``hyperparameters.structure_key`` equal; ``config`` is any of them), each with its
    seed's streams and its own traced hyperparameters, with the resolved ``strategy``.

    Args:
      mesh: a single run's device mesh; with several devices each batch is split over
        them and the state and images are replicated (``strategies.SINGLE`` only).
      primary: whether this process writes the runs' files (process 0).
      isolate_failures: a run with a non-finite value stops alone, recorded as failed
        (a sweep); otherwise ``NonFiniteError`` stops the command (a single run).
      stop_after_epoch, allow_change, announce: as in ``single_run.train_and_evaluate``.
    """
    data_parallel = mesh is not None and mesh.devices.size > 1
    if data_parallel and strategy != strategies.SINGLE:
        raise ConfigError(f"data parallel training runs one run alone, not --strategy={strategy}")
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
    streams = [rng.make_streams(m.config.seed) for m in members]
    for member in members:
        for line in warmups.warmup_warnings(member.config, dataset.train.num_examples):
            if member.label:
                logging.warning("%s: %s", member.label, line)
            else:
                logging.warning("%s", line)
    runs = [
        resume.open_run(m.workdir, m.config, dataset.record, primary=primary, label=m.label)
        for m in members
    ]
    try:
        place = _replicated_on(mesh)
        initial = [place(program.initial_state(s.init)) for s in streams]
        images = place(dataset.train.images)
        states, start_epoch = _restore_common_epoch(runs, initial, program.steps_per_epoch)
        _start_runs(runs, members, states, start_epoch, dataset.record, allow_change)
        traced = [hyperparameters.traced_values(m.config) for m in members]
        state, run_streams, run_traced = strategies.place(
            tuple(strategies.stack_runs(trees, strategy) for trees in (states, streams, traced)),
            strategy,
            len(members),
        )
        epoch_program, compile_seconds = program.compile(
            state,
            run_streams,
            images,
            run_traced,
            epoch_fn=strategies.multi_run_epoch(program.train_epoch, strategy),
        )
        logging.info("compiled the training epoch in %.1f s", compile_seconds)
        stopping = [
            early_stopping_of(run, m.config, start_epoch)
            for run, m in zip(runs, members, strict=True)
        ]
        result = fit.fit(
            epoch_program,
            state,
            run_streams,
            images,
            runs,
            validate=lambda params, i: validation(params, streams[i].eval),
            start_epoch=start_epoch,
            num_epochs=config.training.num_epochs,
            checkpoint_every_epochs=config.training.checkpoint_every_epochs,
            stop_after_epoch=stop_after_epoch,
            run_view=strategies.run_view(strategy),
            description=description,
            announce=announce,
            isolate_failures=isolate_failures,
            early_stopping=stopping,
        )
        reports = [None] * len(runs)
        if result.status == "complete":
            for i, run in enumerate(runs):
                if i not in result.failed:
                    reports[i] = fit.write_final_report(
                        run,
                        program.vae,
                        dataset.record,
                        result.train_seconds,
                        compile_seconds,
                        stopping[i],
                    )
    finally:
        for run in runs:
            run.close()
    failures = {members[i].label: why for i, why in result.failed.items()}
    return TrainedGroup(
        result.status,
        result.epochs_completed,
        result.state,
        result.train_seconds,
        failures,
        reports,
    )
