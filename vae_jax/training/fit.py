"""``fit``: the one training loop, for a single run and for the seeds of a sweep.

Read top to bottom, per epoch: the compiled ``lax.scan`` over the epoch's steps, then for
each run in the program the non-finite check, validation, one metrics record, early
stopping's count (the best checkpoint, the stop) and the checkpoint decision, then the
stop on SIGTERM; ``report.json`` at the end of a complete
run (``write_final_report``). A single run passes one ``RunDirectory``
and its own state; a sweep passes one directory per seed and states stacked over seeds
(``run_view`` picks run ``i``'s part of a stacked tree). A non-finite value stops a single
run; in a sweep's program it stops only that run, recorded as failed in its
``report.json``, and the others go on.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from vae_jax.core import networks
from vae_jax.errors import NonFiniteError
from vae_jax.run.directory import RunDirectory
from vae_jax.run.metrics_log import read_metrics
from vae_jax.run.progress import Progress
from vae_jax.run.reports import final_report
from vae_jax.train_state import param_norm
from vae_jax.training import summaries
from vae_jax.training.early_stopping import IMPROVED, STOP, WAITING, EarlyStopping
from vae_jax.training.preemption import TerminationRequest


@dataclasses.dataclass
class FitResult:
    state: Any  # the final train state (stacked over runs in a sweep)
    status: str  # "complete", or "stopped" (SIGTERM, or stop_after_epoch before the end)
    epochs_completed: int
    train_seconds: float  # wall time of the loop in this process
    failed: dict = dataclasses.field(default_factory=dict)  # run index -> why it stopped


def compile_epoch(epoch_fn, state, streams, images, traced):
    """``epoch_fn(state, streams, images, epoch, traced)`` compiled ahead of time, once per
    run, with the state donated; returns ``program(state, streams, images, epoch)`` (the
    traced hyperparameters bound) and the seconds compiling took."""
    started = time.perf_counter()
    lowered = jax.jit(epoch_fn, donate_argnums=0).lower(
        state, streams, images, jnp.int32(0), traced
    )
    compiled = lowered.compile()

    def program(state, streams, images, epoch):
        return compiled(state, streams, images, epoch, traced)

    return program, time.perf_counter() - started


def checkpoint_due(epoch: int, *, every: int, num_epochs: int) -> bool:
    """Every ``every`` epochs and after the last epoch of the schedule."""
    return epoch % every == 0 or epoch == num_epochs


def _stopped_message(what: str, epoch: int, step: int, run: RunDirectory) -> str:
    saved = run.checkpoints.steps()
    kept = f"the last good checkpoint (step {saved[-1]}) is intact" if saved else "no checkpoint"
    label = f" ({run.label})" if run.label else ""
    return f"non-finite {what} at epoch {epoch}, step {step}{label}; training stopped, {kept}"


def stop_if_not_finite(step_metrics, *, epoch: int, first_step: int, run: RunDirectory) -> None:
    """Raises ``NonFiniteError`` naming the first non-finite metric of the epoch, its step
    and the last good checkpoint (which stays intact)."""
    found = summaries.first_non_finite(step_metrics)
    if found is None:
        return
    index, name, value = found
    raise NonFiniteError(
        _stopped_message(f"train/{name}={value}", epoch, first_step + index + 1, run)
    )


def stop_if_record_not_finite(record: dict, *, epoch: int, step: int, run: RunDirectory) -> None:
    """The parameters (their norm) and validation must be finite too before the epoch is
    recorded and saved: a blow-up at an epoch's last step shows only there."""
    checked = [n for n in sorted(record) if n == "train/param_norm" or n.startswith("validation/")]
    for name in checked:
        if not math.isfinite(record[name]):
            raise NonFiniteError(_stopped_message(f"{name}={record[name]}", epoch, step, run))


def epoch_record(
    step_metrics, params, validation: dict, seconds: float, *, runs_in_program: int = 1
) -> dict:
    """The metrics record of one epoch: training summaries, parameter norm, validation,
    wall-clock time. ``seconds`` is the program's epoch; when it trained several runs (a
    sweep), examples per second count all of them."""
    metrics = summaries.summarize_epoch(step_metrics)
    metrics["train/param_norm"] = float(param_norm(params))
    metrics.update(validation)
    metrics["time/epoch_seconds"] = seconds
    metrics["time/examples_per_second"] = metrics["train/num_examples"] / seconds
    if runs_in_program > 1:
        metrics["time/examples_per_second"] *= runs_in_program
        metrics["time/seeds_in_program"] = runs_in_program
    return metrics


def single_run_view(tree, index: int):
    """``run_view`` of a program that trains one run: its tree is the run's own."""
    del index
    return tree


def fit(
    epoch_program: Callable,
    state,
    streams,
    images: jax.Array,
    runs: Sequence[RunDirectory],
    *,
    validate: Callable[[Any, int], dict],
    start_epoch: int,
    num_epochs: int,
    checkpoint_every_epochs: int,
    stop_after_epoch: int | None = None,
    run_view: Callable[[Any, int], Any] = single_run_view,
    description: str = "train",
    announce: bool = True,
    isolate_failures: bool = False,
    early_stopping: Sequence[EarlyStopping] = (),
) -> FitResult:
    """Trains from ``start_epoch`` to ``num_epochs`` (or ``stop_after_epoch``).

    Args:
      epoch_program: compiled ``(state, streams, images, epoch) -> (state, step metrics)``.
      state, streams, images: its inputs (``state`` is donated).
      runs: the directory of each run the program trains (metrics log open: restored).
      validate: ``validate(params, i) -> metrics`` of run ``i``.
      start_epoch: epochs already done (restored).
      num_epochs: the length of the run (and of its learning-rate schedule).
      checkpoint_every_epochs: save every this many epochs; also after the last epoch,
        at ``stop_after_epoch`` and on SIGTERM.
      stop_after_epoch: stop early, with a checkpoint, as if interrupted there.
      run_view: ``run_view(tree, i)``: run ``i``'s part of a state or of metrics.
      description: shown with the progress.
      announce: print where the run stopped and how to resume it.
      isolate_failures: a run with a non-finite value stops alone, recorded as failed in
        its ``report.json`` (``FitResult.failed``), and the others go on (a sweep);
        otherwise ``NonFiniteError`` stops the loop (a single run).
      early_stopping: one ``EarlyStopping`` per run, replayed from its records (empty: off).
        An improving epoch saves the run's best checkpoint; a run whose count runs out
        saves a checkpoint and stops alone (its state is no longer recorded).
    """
    last_epoch = min(num_epochs, stop_after_epoch or num_epochs)
    progress = Progress(num_epochs, unit="epoch", description=description, initial=start_epoch)
    epoch, stop_requested, failed = start_epoch, False, {}
    stopping = list(early_stopping) or [EarlyStopping(0) for _ in runs]
    done = {i for i, count in enumerate(stopping) if count.stopped}  # stopped early before
    started = time.perf_counter()
    try:
        with TerminationRequest() as termination:
            first = last_epoch + 1 if len(done) == len(runs) else start_epoch + 1
            for epoch in range(first, last_epoch + 1):
                epoch_started = time.perf_counter()
                state, step_metrics = epoch_program(state, streams, images, jnp.int32(epoch - 1))
                step_metrics = jax.device_get(step_metrics)
                seconds = time.perf_counter() - epoch_started
                stop_requested = bool(termination)
                save = (
                    stop_requested
                    or epoch == last_epoch
                    or checkpoint_due(epoch, every=checkpoint_every_epochs, num_epochs=num_epochs)
                )
                losses, validation_elbos = [], []
                for i, run in enumerate(runs):
                    if i in failed or i in done:  # stopped earlier: nothing more
                        continue
                    run_state, run_metrics = run_view(state, i), run_view(step_metrics, i)
                    try:
                        record = _checked_record(
                            run, run_state, run_metrics, epoch, validate(run_state.params, i),
                            seconds, len(runs),
                        )  # fmt: skip
                    except NonFiniteError as error:
                        if not isolate_failures:
                            raise
                        failed[i] = str(error)
                        logging.warning("%s; the other runs go on", error)
                        run.write_failure(str(error), epoch=epoch - 1, step=_last_step(run))
                        continue
                    run.metrics.write(epoch, int(run_state.step), record)
                    outcome = WAITING
                    if stopping[i].enabled:
                        outcome = stopping[i].update(
                            epoch, record["validation/elbo"], int(run_state.step)
                        )
                    if outcome == IMPROVED:
                        run.save_best_checkpoint(epoch, run_state)
                    if save or outcome == STOP:
                        run.save_checkpoint(epoch, run_state)
                    if outcome == STOP:
                        done.add(i)
                        logging.info(
                            "early stopping%s after epoch %d: best validation ELBO at epoch %d",
                            f" ({run.label})" if run.label else "", epoch, stopping[i].best_epoch,
                        )  # fmt: skip
                    losses.append(record["train/loss"])
                    validation_elbos.append(record.get("validation/elbo", float("nan")))
                if len(failed) == len(runs):
                    break
                if len(done) + len(failed) == len(runs):  # the last ones stopped early
                    progress.update(epoch)
                    break
                if len(runs) == 1:
                    progress.update(epoch, loss=losses[0], val_elbo=validation_elbos[0])
                else:
                    progress.update(epoch, mean_loss=sum(losses) / max(len(losses), 1))
                if stop_requested:
                    logging.warning("stopped by a signal after epoch %d; checkpoint saved", epoch)
                    break
    finally:
        progress.close()
    train_seconds = time.perf_counter() - started
    all_stopped_early = len(done) + len(failed) == len(runs) and done
    if stop_requested or (
        last_epoch < num_epochs and len(failed) < len(runs) and not all_stopped_early
    ):
        reason = "stopped by a signal" if stop_requested else "stopped as asked"
        if announce:
            print(f"{reason} after epoch {epoch}; resume with the same command")
        return FitResult(state, "stopped", epoch, train_seconds, failed)
    return FitResult(state, "complete", epoch, train_seconds, failed)


def _checked_record(run, run_state, run_metrics, epoch, validation, seconds, runs_in_program):
    """The epoch's record of one run, after its non-finite checks (``NonFiniteError``)."""
    steps_this_epoch = len(np.asarray(run_metrics["loss"]))
    stop_if_not_finite(
        run_metrics, epoch=epoch, first_step=int(run_state.step) - steps_this_epoch, run=run
    )
    record = epoch_record(
        run_metrics, run_state.params, validation, seconds, runs_in_program=runs_in_program
    )
    stop_if_record_not_finite(record, epoch=epoch, step=int(run_state.step), run=run)
    return record


def _last_step(run: RunDirectory) -> int:
    """The global step of the run's last good checkpoint (0 if it has none)."""
    saved = run.checkpoints.steps()
    return saved[-1] if saved else 0


def write_final_report(
    run: RunDirectory,
    vae,
    data_record: dict,
    train_seconds: float,
    compile_seconds: float,
    early_stopping: EarlyStopping | None = None,
) -> dict:
    """Writes ``report.json`` of a completed run (keeping an evaluation merged into it),
    with early stopping's summary when it was on."""
    report = final_report(
        read_metrics(run.path),
        seed=run.seed,
        num_parameters=networks.num_parameters(jax.eval_shape(vae.init, jax.random.key(0))),
        data_record=data_record,
        train_seconds=train_seconds,
        compile_seconds=compile_seconds,
    )
    if early_stopping is not None and early_stopping.enabled:
        report["early_stopping"] = early_stopping.summary()
    return run.write_report(report)
