"""A hyperparameter grid in one command against its runs one command at a time.

Imported by scripts/benchmark.py (``--sections=grid``), which runs it.

The grid is 4 KL weights x 2 learning rates x 2 seeds of the default config (16 runs of
``epochs`` epochs each, no evaluation). Two ratios:

* ``commands``: the wall time of one ``python -m experiments.sweep --grid=... --grid=...
  --seeds=0-1`` divided by that of the 16 ``python -m experiments.train`` commands run one
  after another: what a researcher waits for (target <= 0.5).
* ``compiled_epoch``: one compiled epoch of the 16 runs in one program (``map``, as the
  sweep runs on a CPU) divided by 16 single-run epochs, timed alternately: whether the
  arithmetic itself gets cheaper, or only the start-up, data loading and compilation.
"""

from __future__ import annotations

import itertools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from sweep_benchmark import NUM_TRAIN, _data_dir_with_fashion_mnist, _run_once, synthetic_images

from vae_jax import hyperparameters
from vae_jax.core import rng
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.sweep import strategies
from vae_jax.training.program import build_program

REPO = Path(__file__).resolve().parents[1]
CONFIG = "experiments/configs/fashion_mlp.py"
BETAS = (0.25, 0.5, 1.0, 2.0)
LEARNING_RATES = (3e-4, 1e-3)
SEEDS = (0, 1)


def _command(module: str, workdir: Path, data_dir: str, epochs: int, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", module, f"--config={CONFIG}", f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}", f"--config.training.num_epochs={epochs}", *flags,
    ]  # fmt: skip


def _timed_command(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - started


def command_ratio(epochs: int) -> dict:
    """The grid's one command against its 16 single-run commands."""
    data_dir = _data_dir_with_fashion_mnist()
    with tempfile.TemporaryDirectory(prefix="vae_jax_grid_bench_") as tmp:
        single = 0.0
        for beta, lr, seed in itertools.product(BETAS, LEARNING_RATES, SEEDS):
            single += _timed_command(_command(
                "experiments.train", Path(tmp) / f"single_{beta}_{lr}_{seed}", data_dir, epochs,
                f"--config.objective.beta={beta}", f"--config.optimizer.learning_rate={lr}",
                f"--config.seed={seed}",
            ))  # fmt: skip
        grid = _timed_command(_command(
            "experiments.sweep", Path(tmp) / "grid", data_dir, epochs,
            "--grid=objective.beta=" + ",".join(map(str, BETAS)),
            "--grid=optimizer.learning_rate=" + ",".join(map(str, LEARNING_RATES)),
            "--seeds=" + ",".join(map(str, SEEDS)), "--evaluate=false",
        ))  # fmt: skip
    return {
        "epochs": epochs,
        "single_commands_seconds": single,
        "grid_command_seconds": grid,
        "ratio": grid / single,
    }


def compiled_epoch_ratio(config, repeats: int) -> dict:
    """One compiled epoch of the 16 runs (``map``) against 16 single-run epochs."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    program = build_program(
        config, image_shape=(28, 28, 1), preprocessing=preprocessing, num_train_examples=NUM_TRAIN
    )
    epoch_fn = program.train_epoch
    images, epoch = synthetic_images(NUM_TRAIN), jnp.int32(0)
    runs = []
    for beta, lr, seed in itertools.product(BETAS, LEARNING_RATES, SEEDS):
        cell = config.copy_and_resolve_references()
        cell.objective.beta, cell.optimizer.learning_rate, cell.seed = beta, lr, seed
        streams = rng.make_streams(seed)
        state = program.initial_state(streams.init)
        runs.append((state, streams, hyperparameters.traced_values(cell)))
    single = jax.jit(epoch_fn).lower(*runs[0][:2], images, epoch, runs[0][2]).compile()
    stacked = [strategies.stack(list(trees)) for trees in zip(*runs, strict=True)]
    grid_fn = jax.jit(strategies.multi_run_epoch(epoch_fn, "map"))
    grid = grid_fn.lower(stacked[0], stacked[1], images, epoch, stacked[2]).compile()
    ratios = []
    for _ in range(repeats):
        one = _run_once(single, *runs[0][:2], images, epoch, runs[0][2])
        many = _run_once(grid, stacked[0], stacked[1], images, epoch, stacked[2])
        ratios.append(many / (len(runs) * one))
    return {"ratio": statistics.median(ratios), "ratios": ratios}


def grid_over_single_runs(config, *, epochs: int = 1, repeats: int = 3) -> dict:
    return {
        "grid": {
            "objective.beta": BETAS,
            "optimizer.learning_rate": LEARNING_RATES,
            "seeds": SEEDS,
        },
        "commands": command_ratio(epochs),
        "compiled_epoch": compiled_epoch_ratio(config, repeats),
        "target": 0.5,
    }
