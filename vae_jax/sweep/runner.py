"""``run_sweep``: train many seeds in one compiled program, evaluate them, aggregate.

Each seed ``s`` gets ``<workdir>/seed_<s>/`` with the files of a single run (config with
``seed=s``, manifest, metrics, TensorBoard events, checkpoints, report, figures), so every
tool that reads a run (evaluate, reproduce, ``load_run``) reads a sweep's seed too. The
sweep itself writes ``sweep.json`` (settings, strategy and why), ``sweep_table.json`` and
``sweep_table.md`` (every metric per seed with mean, standard deviation and a 95%
interval) and ``figures/sweep_curves.png``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, NamedTuple

import jax

from vae_jax import adapter, config_checks, manifest, rng, runtime
from vae_jax.data import Dataset, load_dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import evaluate_run as evaluation
from vae_jax.evaluation.validation import make_validation
from vae_jax.rundir import files
from vae_jax.rundir.lock import WorkdirLock
from vae_jax.single_run import key_reuse_checking
from vae_jax.sweep import aggregate, strategies
from vae_jax.sweep.seeds import seed_config, seed_workdir
from vae_jax.train_state import create_train_state
from vae_jax.training import fit, resume
from vae_jax.training.trainer import Trainer, trainer_from_config


class TrainedSweep(NamedTuple):
    """What training a sweep leaves for its evaluation."""

    status: str  # "complete" or "stopped"
    epochs_completed: int
    strategy: str  # the one that ran (``auto`` resolved)
    states: Any  # final train states, stacked over seeds
    trainer: Trainer
    dataset: Dataset
    train_seconds: float


def check_before_start(config, workdir: Path, seeds: list[int], strategy: str) -> None:
    config_checks.check_all(config)
    if strategy not in strategies.STRATEGIES:
        raise ConfigError(f"--strategy={strategy!r} is not one of {list(strategies.STRATEGIES)}")
    if config.runtime.num_devices > 1:
        raise ConfigError(
            f"runtime.num_devices={config.runtime.num_devices}: a sweep does not split batches "
            "over devices; it puts seeds on devices with --strategy=shard (leave it at 0)"
        )
    if strategy == "shard" and len(seeds) % jax.device_count():
        raise ConfigError(
            f"--strategy=shard: {len(seeds)} seeds do not divide over {jax.device_count()} devices"
        )
    for seed in seeds:
        resume.check_workdir(seed_workdir(workdir, seed), seed_config(config, seed))


def run_sweep(
    config,
    workdir: str | Path,
    seeds: list[int],
    *,
    strategy: str = "auto",
    evaluate: bool = True,
    num_importance_samples: int | None = None,
) -> dict:
    """Trains (or resumes) every seed, evaluates each, and writes the aggregate table."""
    workdir = files.workdir_path(workdir)
    runtime.apply_runtime_config(config)
    check_before_start(config, workdir, seeds, strategy)
    if evaluate:
        evaluation.resolve_options(config.evaluation, num_importance_samples, None, None)
    with key_reuse_checking(config):
        dataset = load_dataset(config)  # only reads: a data error leaves nothing behind
    with contextlib.ExitStack() as owned:  # the sweep's directory and every seed's
        owned.enter_context(WorkdirLock(workdir, "sweep"))
        for seed in seeds:
            owned.enter_context(WorkdirLock(seed_workdir(workdir, seed), f"sweep, seed {seed}"))
        with key_reuse_checking(config):
            trained = _train(config, dataset, workdir, seeds, strategy)
        if trained.status != "complete":
            return {"status": trained.status, "epochs_completed": trained.epochs_completed}
        if evaluate:
            _evaluate(config, workdir, seeds, trained, num_importance_samples)
        table = aggregate.write_table(workdir, seeds)
        aggregate.curves_figure(workdir, seeds)
        aggregate.print_table(table)
    return {
        "status": "complete",
        "strategy": trained.strategy,
        "train_seconds": trained.train_seconds,
        "table": table,
    }


def _restore_common_epoch(runs, trainer, streams) -> tuple[list, int]:
    """Every seed restored at the newest epoch all of them have a checkpoint of."""
    initial = [create_train_state(trainer.vae, trainer.optimizer, s.init) for s in streams]
    restored = [run.restore(state) for run, state in zip(runs, initial, strict=True)]
    common = min(epoch for _, epoch in restored)
    states = []
    for run, state0, (state, epoch) in zip(runs, initial, restored, strict=True):
        if epoch != common:  # a kill between the seeds' saves: step back to the common epoch
            state, _ = run.restore(state0, epoch=common, steps_per_epoch=trainer.steps_per_epoch)
            # Its newer checkpoints will be written again, bit for bit: out of their way.
            newer = [s for s in run.checkpoints.steps() if s > int(state.step)]
            run.checkpoints.set_aside(newer, files.SUPERSEDED_CHECKPOINT_DIR)
        states.append(state)
    return states, common


def _train(config, dataset, workdir: Path, seeds: list[int], strategy: str) -> TrainedSweep:
    trainer = trainer_from_config(
        config, dataset.image_shape, dataset.preprocessing, dataset.train.num_examples
    )
    validation = make_validation(
        trainer.vae,
        dataset,
        num_samples=config.training.validation_num_samples,
        batch_size=config.training.eval_batch_size,
    )
    chosen, reason = strategies.resolve(
        strategy, backend=jax.default_backend(), device_count=jax.device_count(),
        num_seeds=len(seeds),
    )  # fmt: skip
    streams = [rng.make_streams(s) for s in seeds]
    runs = [
        resume.open_run(
            seed_workdir(workdir, s), seed_config(config, s), dataset.record, label=f"seed {s}"
        )
        for s in seeds
    ]
    try:
        states, start_epoch = _restore_common_epoch(runs, trainer, streams)
        stacked, stacked_streams = strategies.place(
            strategies.stack(states), strategies.stack(streams), chosen, len(seeds)
        )
        _write_sweep_file(workdir, config, seeds, strategy, chosen, reason)
        images = dataset.train.images
        epoch_program, compile_seconds = fit.compile_epoch(
            strategies.multi_seed_epoch(trainer.train_epoch, chosen), stacked, stacked_streams,
            images,
        )  # fmt: skip
        result = fit.fit(
            epoch_program,
            stacked,
            stacked_streams,
            images,
            runs,
            validate=lambda params, i: validation(params, streams[i].eval),
            start_epoch=start_epoch,
            num_epochs=config.training.num_epochs,
            checkpoint_every_epochs=config.training.checkpoint_every_epochs,
            run_view=strategies.take,
            description=f"sweep of {len(seeds)} seeds",
        )
        if result.status == "complete":
            for run in runs:
                fit.write_final_report(
                    run, trainer.vae, dataset.record, result.train_seconds, compile_seconds
                )
    finally:
        for run in runs:
            run.close()
    return TrainedSweep(
        result.status, result.epochs_completed, chosen, result.state, trainer, dataset,
        result.train_seconds,
    )  # fmt: skip


def _write_sweep_file(workdir: Path, config, seeds, requested, chosen, reason) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    files.write_json(
        workdir / files.SWEEP_FILE,
        {
            "seeds": seeds,
            "strategy_requested": requested,
            "strategy": chosen,
            "why": {"reason": reason},
            "seed_workdirs": [str(seed_workdir(workdir, s)) for s in seeds],
            "config": resume.config_as_json(config),
            "environment": manifest.environment(),
        },
    )


def _evaluate(config, workdir, seeds, trained: TrainedSweep, num_importance_samples) -> None:
    k, chunk, batch = evaluation.resolve_options(
        config.evaluation, num_importance_samples, None, None
    )
    evaluator = evaluation.Evaluator(
        adapter.evaluation_vae_from_config(config, trained.trainer.vae.image_shape),
        trained.dataset,
        config,
        num_importance_samples=k,
        chunk_size=chunk,
        batch_size=batch,
    )
    states = trained.states
    epochs = config.training.num_epochs
    for i, seed in enumerate(seeds):
        state = strategies.take(states, i)
        record = {"epoch": epochs, "seed": seed}
        result = evaluation.evaluate_and_report(
            evaluator, seed_workdir(workdir, seed), state, record, quiet=True
        )
        print(f"seed {seed}: test NLL {result['test_nll']['nats']:.3f} "
              f"± {result['test_nll']['standard_error']:.3f} nats (K={k})")  # fmt: skip
