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
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import logging

from vae_jax import config_checks, manifest, rng, runtime
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import evaluate_run as evaluation
from vae_jax.progress import Progress
from vae_jax.sweep import aggregate, strategies
from vae_jax.training import loop, resume, run_files
from vae_jax.training.preemption import TerminationRequest
from vae_jax.training.step import create_train_state
from vae_jax.training.trainer import make_trainer

SWEEP_FILE = "sweep.json"


def seed_workdir(workdir: Path, seed: int) -> Path:
    return Path(workdir) / f"seed_{seed}"


def seed_config(config, seed: int):
    copy = config.copy_and_resolve_references()
    copy.seed = seed
    return copy


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
        run_files.check_workdir(seed_workdir(workdir, seed), seed_config(config, seed))


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
    workdir = Path(workdir).absolute()
    runtime.apply_runtime_config(config)
    check_before_start(config, workdir, seeds, strategy)
    if evaluate:
        evaluation.resolve_options(config.evaluation, num_importance_samples, None, None)
    checking = (
        jax.debug_key_reuse(True) if config.runtime.debug_key_reuse else contextlib.nullcontext()
    )
    with checking:
        trained = _train(config, workdir, seeds, strategy)
    if trained["status"] != "complete":
        return trained
    if evaluate:
        _evaluate(config, workdir, seeds, trained, num_importance_samples)
    table = aggregate.write_table(workdir, seeds)
    aggregate.curves_figure(workdir, seeds)
    aggregate.print_table(table)
    return {**trained, "table": table}


def _train(config, workdir: Path, seeds: list[int], strategy: str) -> dict:
    dataset = load_dataset(config)
    trainer = make_trainer(
        config, dataset.image_shape, dataset.preprocessing, dataset.train.num_examples
    )
    configs = [seed_config(config, s) for s in seeds]
    files = [
        run_files.RunFiles(seed_workdir(workdir, s), c, dataset.record, label=f"seed {s}")
        for s, c in zip(seeds, configs, strict=True)
    ]
    try:
        return _train_seeds(config, workdir, seeds, strategy, dataset, trainer, files)
    finally:
        for f in files:
            f.close()


def _restore_common_epoch(files, trainer, streams) -> tuple[list, int]:
    """Every seed restored at the newest epoch all of them have a checkpoint of."""
    initial = [create_train_state(trainer.vae, trainer.optimizer, s.init) for s in streams]
    restored = [f.restore(state) for f, state in zip(files, initial, strict=True)]
    common = min(epoch for _, epoch in restored)
    states = []
    for f, state0, (state, epoch) in zip(files, initial, restored, strict=True):
        if epoch != common:  # a kill between the seeds' saves: step back to the common epoch
            state, _ = f.restore(state0, epoch=common, steps_per_epoch=trainer.steps_per_epoch)
        states.append(state)
    return states, common


def _train_seeds(config, workdir, seeds, strategy, dataset, trainer, files) -> dict:
    streams = [rng.make_streams(s) for s in seeds]
    states, start_epoch = _restore_common_epoch(files, trainer, streams)
    stacked, stacked_streams = strategies.stack(states), strategies.stack(streams)
    images = dataset.train.images

    def probe_epoch(candidate):
        steps = strategies.PROBE_STEPS
        probe = make_trainer(
            config,
            dataset.image_shape,
            dataset.preprocessing,
            min(dataset.train.num_examples, steps * config.training.batch_size),
        )
        return strategies.multi_seed_epoch(probe.train_epoch, candidate)

    probe_images = images[: strategies.PROBE_STEPS * config.training.batch_size]
    resuming = strategy == "auto" and start_epoch > 0
    recorded = _recorded_strategy(workdir) if resuming else None
    if recorded:  # keep the arithmetic the sweep started with
        chosen, why = recorded, {"reason": "chosen when this sweep started (resumed)"}
    else:
        chosen, why = strategies.choose(
            strategy, probe_epoch, stacked, stacked_streams, probe_images
        )
    stacked, stacked_streams = strategies.place(stacked, stacked_streams, chosen, len(seeds))
    _write_sweep_file(workdir, config, seeds, strategy, chosen, why)

    compiled, compile_seconds = loop.compile_epoch(
        strategies.multi_seed_epoch(trainer.train_epoch, chosen), stacked, stacked_streams, images
    )
    validate = loop.make_validation(trainer, dataset, config)
    num_epochs = config.training.num_epochs
    progress = Progress(num_epochs, unit="epoch", description=f"sweep of {len(seeds)} seeds",
                        initial=start_epoch)  # fmt: skip
    terminated = False
    started = time.perf_counter()
    try:
        with TerminationRequest() as termination:
            for epoch in range(start_epoch + 1, num_epochs + 1):
                epoch_started = time.perf_counter()
                first_step = int(jax.device_get(stacked.step)[0])
                stacked, step_metrics = compiled(
                    stacked, stacked_streams, images, jnp.int32(epoch - 1)
                )
                step_metrics = jax.device_get(step_metrics)
                seconds = time.perf_counter() - epoch_started
                terminated = bool(termination)
                losses = []
                for i, f in enumerate(files):
                    metrics = f.end_epoch(
                        epoch,
                        first_step,
                        strategies.take(step_metrics, i),
                        strategies.take(stacked, i),
                        lambda p, i=i: validate(p, streams[i]),
                        seconds,
                        save=terminated,
                        seeds_in_program=len(seeds),
                    )
                    losses.append(metrics["train/loss"])
                progress.update(epoch, mean_loss=sum(losses) / len(losses))
                if terminated:
                    logging.warning("stopped by SIGTERM after epoch %d; checkpoints saved", epoch)
                    break
    finally:
        progress.close()
    if terminated:
        print(f"stopped by SIGTERM after epoch {epoch}; resume with the same command")
        return {"status": "stopped", "epochs_completed": epoch}
    seconds = time.perf_counter() - started
    for f in files:
        f.finish(trainer.vae, dataset.record, seconds, compile_seconds)
    return {
        "status": "complete",
        "strategy": chosen,
        "states": stacked,
        "trainer": trainer,
        "dataset": dataset,
        "train_seconds": seconds,
    }


def _recorded_strategy(workdir: Path) -> str | None:
    """The strategy an interrupted ``auto`` sweep chose, if it can still run here."""
    path = workdir / SWEEP_FILE
    if not path.exists():
        return None
    recorded = manifest.read_json(path)
    chosen = recorded.get("strategy")
    if chosen == "shard" and len(recorded.get("seeds", [])) % jax.device_count():
        return None
    return chosen if chosen in strategies.STRATEGIES else None


def _write_sweep_file(workdir: Path, config, seeds, requested, chosen, why) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    manifest.write_json(
        workdir / SWEEP_FILE,
        {
            "seeds": seeds,
            "strategy_requested": requested,
            "strategy": chosen,
            "why": why,
            "seed_workdirs": [str(seed_workdir(workdir, s)) for s in seeds],
            "config": resume.config_as_json(config),
            "environment": manifest.environment(),
        },
    )


def _evaluate(config, workdir, seeds, trained, num_importance_samples) -> None:
    k, chunk, batch = evaluation.resolve_options(
        config.evaluation, num_importance_samples, None, None
    )
    evaluator = evaluation.Evaluator(
        trained["trainer"].vae,
        trained["dataset"],
        config,
        num_importance_samples=k,
        chunk_size=chunk,
        batch_size=batch,
    )
    states = trained["states"]
    epochs = config.training.num_epochs
    for i, seed in enumerate(seeds):
        state = strategies.take(states, i)
        record = {"epoch": epochs, "seed": seed}
        result = evaluation.evaluate_and_report(
            evaluator, seed_workdir(workdir, seed), state, record, quiet=True
        )
        print(f"seed {seed}: test NLL {result['test_nll']['nats']:.3f} "
              f"± {result['test_nll']['standard_error']:.3f} nats (K={k})")  # fmt: skip
