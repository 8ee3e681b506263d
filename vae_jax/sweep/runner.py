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

from vae_jax import adapter, config_checks, hyperparameters, manifest, runtime
from vae_jax.core import rng
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
from vae_jax.training.trainer import epoch_with_traced_hyperparameters, trainer_from_config


class Member(NamedTuple):
    """One run trained by a sweep's program: a seed (of a cell)."""

    config: Any  # the config of the single run it equals
    workdir: Path
    label: str  # "seed 3", "objective.beta=0.5, seed 3"


class TrainedGroup(NamedTuple):
    """What training one program's runs leaves for their evaluation."""

    status: str  # "complete" or "stopped"
    epochs_completed: int
    states: Any  # final train states, stacked over runs
    train_seconds: float


def check_strategy(config, strategy: str, num_runs: int) -> None:
    """The strategy and the device settings, before any work."""
    if strategy not in strategies.STRATEGIES:
        raise ConfigError(f"--strategy={strategy!r} is not one of {list(strategies.STRATEGIES)}")
    if config.runtime.num_devices > 1:
        raise ConfigError(
            f"runtime.num_devices={config.runtime.num_devices}: a sweep does not split batches "
            "over devices; it puts seeds on devices with --strategy=shard (leave it at 0)"
        )
    if strategy == "shard" and num_runs % jax.device_count():
        raise ConfigError(
            f"--strategy=shard: {num_runs} runs do not divide over {jax.device_count()} devices"
        )


def seed_members(config, workdir: Path, seeds: list[int]) -> list[Member]:
    """The runs of a sweep over seeds: ``<workdir>/seed_<s>``."""
    return [Member(seed_config(config, s), seed_workdir(workdir, s), f"seed {s}") for s in seeds]


def check_before_start(config, workdir: Path, seeds: list[int], strategy: str) -> None:
    config_checks.check_all(config)
    check_strategy(config, strategy, len(seeds))
    for member in seed_members(config, workdir, seeds):
        resume.check_workdir(member.workdir, member.config)


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
    members = seed_members(config, workdir, seeds)
    if evaluate:
        evaluation.resolve_options(config.evaluation, num_importance_samples, None, None)
    with key_reuse_checking(config):
        dataset = load_dataset(config)  # only reads: a data error leaves nothing behind
    with contextlib.ExitStack() as owned:  # the sweep's directory and every seed's
        owned.enter_context(WorkdirLock(workdir, "sweep"))
        for member, seed in zip(members, seeds, strict=True):
            owned.enter_context(WorkdirLock(member.workdir, f"sweep, seed {seed}"))
        with key_reuse_checking(config):
            chosen, reason = resolve_strategy(strategy, len(seeds))
            _write_sweep_file(workdir, config, seeds, strategy, chosen, reason)
            trained = train_group(config, dataset, members, chosen, f"sweep of {len(seeds)} seeds")
        if trained.status != "complete":
            return {"status": trained.status, "epochs_completed": trained.epochs_completed}
        if evaluate:
            states = [strategies.take(trained.states, i) for i in range(len(members))]
            evaluate_runs(
                config, dataset, list(zip(members, states, strict=True)), num_importance_samples
            )
        table = aggregate.write_table(workdir, seeds)
        aggregate.curves_figure(workdir, seeds)
        aggregate.print_table(table)
    return {
        "status": "complete",
        "strategy": chosen,
        "train_seconds": trained.train_seconds,
        "table": table,
    }


def resolve_strategy(strategy: str, num_runs: int) -> tuple[str, str]:
    """The strategy that runs here (``auto`` resolved) and why."""
    return strategies.resolve(
        strategy, backend=jax.default_backend(), device_count=jax.device_count(),
        num_runs=num_runs,
    )  # fmt: skip


def _restore_common_epoch(runs, trainer, streams) -> tuple[list, int]:
    """Every run restored at the newest epoch all of them have a checkpoint of."""
    initial = [create_train_state(trainer.vae, trainer.optimizer, s.init) for s in streams]
    restored = [run.restore(state) for run, state in zip(runs, initial, strict=True)]
    common = min(epoch for _, epoch in restored)
    states = []
    for run, state0, (state, epoch) in zip(runs, initial, restored, strict=True):
        if epoch != common:  # a kill between the runs' saves: step back to the common epoch
            state, _ = run.restore(state0, epoch=common, steps_per_epoch=trainer.steps_per_epoch)
            # Its newer checkpoints will be written again, bit for bit: out of their way.
            newer = [s for s in run.checkpoints.steps() if s > int(state.step)]
            run.checkpoints.set_aside(newer, files.SUPERSEDED_CHECKPOINT_DIR)
        states.append(state)
    return states, common


def train_group(
    config, dataset: Dataset, members: list[Member], strategy: str, description: str
) -> TrainedGroup:
    """Trains (or resumes) runs whose configs compile to one program
    (``hyperparameters.structure_key`` equal; ``config`` is any of them), each with its
    seed's streams and its own traced hyperparameters, with the resolved ``strategy``."""
    trainer_args = (
        config, dataset.image_shape, dataset.preprocessing, dataset.train.num_examples
    )  # fmt: skip
    trainer = trainer_from_config(*trainer_args)
    validation = make_validation(
        trainer.vae,
        dataset,
        num_samples=config.training.validation_num_samples,
        batch_size=config.training.eval_batch_size,
    )
    streams = [rng.make_streams(m.config.seed) for m in members]
    runs = [
        resume.open_run(m.workdir, m.config, dataset.record, label=m.label) for m in members
    ]  # fmt: skip
    try:
        states, start_epoch = _restore_common_epoch(runs, trainer, streams)
        traced = [hyperparameters.traced_values(m.config) for m in members]
        stacked, stacked_streams, stacked_traced = strategies.place(
            (strategies.stack(states), strategies.stack(streams), strategies.stack(traced)),
            strategy,
            len(members),
        )
        images = dataset.train.images
        epoch_program, compile_seconds = fit.compile_epoch(
            strategies.multi_run_epoch(epoch_with_traced_hyperparameters(*trainer_args), strategy),
            stacked,
            stacked_streams,
            images,
            stacked_traced,
        )
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
            description=description,
        )
        if result.status == "complete":
            for run in runs:
                fit.write_final_report(
                    run, trainer.vae, dataset.record, result.train_seconds, compile_seconds
                )
    finally:
        for run in runs:
            run.close()
    return TrainedGroup(result.status, result.epochs_completed, result.state, result.train_seconds)


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


def evaluate_runs(config, dataset: Dataset, runs: list[tuple[Member, Any]], num_importance_samples):
    """Evaluates each ``(member, train state)`` (one compiled evaluator for all, all of one
    program's runs) into the member's report."""
    k, chunk, batch = evaluation.resolve_options(
        config.evaluation, num_importance_samples, None, None
    )
    evaluator = evaluation.Evaluator(
        adapter.evaluation_vae_from_config(config, dataset.image_shape),
        dataset,
        config,
        num_importance_samples=k,
        chunk_size=chunk,
        batch_size=batch,
    )
    for member, state in runs:
        record = {"epoch": config.training.num_epochs, "seed": member.config.seed}
        result = evaluation.evaluate_and_report(
            evaluator, member.workdir, state, record, quiet=True
        )
        print(f"{member.label}: test NLL {result['test_nll']['nats']:.3f} "
              f"± {result['test_nll']['standard_error']:.3f} nats (K={k})")  # fmt: skip
