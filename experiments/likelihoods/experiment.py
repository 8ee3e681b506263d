"""Train the quickstart model on a small budget, then measure IWAE against AIS and BDMC.

Every number uses the run's keys as ``experiments.evaluate`` does: the IWAE bound the
``test_iwae`` keys, AIS on test image ``i`` ``fold_in(fold_in(eval, 6), i)``, BDMC's
simulated example ``i`` ``fold_in(fold_in(eval, 7), i)`` (vae_jax/evaluation/
ais_evaluation.py), so ``experiments.evaluate --estimator=ais --bdmc`` with the same
settings reproduces any row.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NamedTuple

import jax

from experiments.configs import fashion_mlp
from vae_jax import adapter
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import ais_evaluation, bounds, vae_ais
from vae_jax.evaluation.ais import HMCSettings
from vae_jax.evaluation.evaluate_run import Evaluator
from vae_jax.run import files, loading
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate

CONFIG = "experiments/configs/fashion_mlp.py"


class Settings(NamedTuple):
    epochs: int
    train_examples: int
    data_dir: str | None
    num_images: int
    num_importance_samples: int
    steps: tuple[int, ...]
    num_chains: int
    leapfrog_steps: int
    bdmc_examples: int
    bdmc_steps: tuple[int, ...]


def parse_steps(values, flag: str) -> tuple[int, ...]:
    """Step counts from a flag's list, each an integer >= 1, in increasing order."""
    try:
        steps = tuple(sorted({int(v) for v in values}))
    except ValueError:
        raise ConfigError(f"{flag}={','.join(values)} must be integers") from None
    if not steps or steps[0] < 1:
        raise ConfigError(f"{flag}={','.join(values)} must be integers >= 1")
    return steps


def check(settings: Settings) -> None:
    """One line naming the flag for a value that cannot run, before any work."""
    for flag in ("epochs", "num_images", "num_importance_samples", "num_chains",
                 "leapfrog_steps", "bdmc_examples"):  # fmt: skip
        if getattr(settings, flag) < 1:
            raise ConfigError(f"--{flag}={getattr(settings, flag)} must be >= 1")
    if settings.train_examples < 0:
        raise ConfigError(f"--train_examples={settings.train_examples} must be >= 0 (0: all)")


def model_config(settings: Settings):
    """The quickstart config with the study's training budget."""
    config = fashion_mlp.get_config()
    config.training.num_epochs = settings.epochs
    config.data.limit_train = settings.train_examples
    if settings.data_dir:
        config.data.data_dir = settings.data_dir
    return config


def _machine() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return f"{jax.device_count()} {device.platform} device(s) ({kind}), {os.cpu_count()} CPU cores"


def _plan(settings: Settings, num_steps: int) -> ais_evaluation.Plan:
    options = vae_ais.AISOptions(
        num_steps=num_steps,
        num_chains=settings.num_chains,
        chain_chunk_size=settings.num_chains,
        hmc=HMCSettings(num_leapfrog_steps=settings.leapfrog_steps),
    )
    return ais_evaluation.Plan("ais", True, options, settings.num_images, settings.bdmc_examples)


def run(workdir: Path, settings: Settings, *, command: str) -> dict:
    """Trains (or finds trained) the model in ``workdir/run``, then measures; returns the
    results, also written to ``workdir/likelihoods.json``."""
    check(settings)
    config = model_config(settings)
    run_dir = Path(workdir) / "run"
    started = time.perf_counter()
    train_and_evaluate(config, run_dir)  # a finished run is found and left as it is
    train_seconds = time.perf_counter() - started
    _, params, run_config = loading.load_run(run_dir)
    dataset = load_dataset(run_config)
    batch = min(run_config.evaluation.batch_size, settings.num_images, settings.bdmc_examples)
    evaluator = Evaluator(
        adapter.evaluation_vae_from_config(run_config, dataset.image_shape),
        dataset,
        **adapter.evaluator_options(run_config),
        num_importance_samples=settings.num_importance_samples,
        chunk_size=run_config.evaluation.importance_chunk_size,
        batch_size=batch,
    )
    seed = int(run_config.seed)
    images = dataset.test.images[: settings.num_images]
    started = time.perf_counter()
    iwae = ais_evaluation.test_image_bounds(evaluator, params, seed, images)
    iwae_seconds = time.perf_counter() - started
    iwae_nll, iwae_error = bounds.mean_and_standard_error(-iwae)
    ais_rows = [
        ais_evaluation.evaluate_ais(evaluator, params, seed, _plan(settings, t), iwae=iwae)
        for t in settings.steps
    ]
    bdmc_rows = [
        ais_evaluation.evaluate_bdmc(evaluator, params, seed, _plan(settings, t))
        for t in settings.bdmc_steps
    ]
    records = read_metrics(run_dir)
    last = records[-1] if records else {}
    results = {
        "command": command,
        "model": {
            "config": CONFIG,
            "epochs": settings.epochs,
            "train_examples": settings.train_examples,
            "train_seconds_this_command": train_seconds,
            "epoch_seconds_total": sum(r.get("time/epoch_seconds", 0.0) for r in records),
            "final_validation_elbo": last.get("validation/elbo"),
            "final_train_elbo": last.get("train/elbo"),
            "dataset": dataset.name,
            "binarization": dataset.record["protocol"]["binarization"],
            "seed": seed,
        },
        "machine": _machine(),
        "settings": settings._asdict(),
        "num_test_images": int(images.shape[0]),
        "iwae": {
            "num_importance_samples": settings.num_importance_samples,
            "nll_nats": iwae_nll,
            "standard_error": iwae_error,
            "seconds": iwae_seconds,
        },
        "ais": ais_rows,
        "bdmc": bdmc_rows,
    }
    files.write_json(Path(workdir) / "likelihoods.json", results)
    return results
