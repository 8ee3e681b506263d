"""Sweep cost against seeds run one by one, measured in one process.

Imported by scripts/benchmark.py (``--sections=sweep``), which runs it.

Two ratios per strategy, each the sweep's wall time divided by ``num_seeds`` times that of
one single-seed run of the same length:

* ``runs``: the real entry points (``run_sweep`` without evaluation against
  ``train_and_evaluate``), each loading the data and compiling its program: what a
  researcher waits for. The target (<= 1.0) applies here.
* ``compute``: only the compiled epoch (one epoch of 8 seeds in one program against one
  single-seed epoch): whether sharing a program also makes the arithmetic cheaper.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.core import rng
from vae_jax.data import catalog
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.sweep import strategies
from vae_jax.training.program import build_program

NUM_TRAIN = 54000  # the default Fashion-MNIST training split (60000 minus validation)


def timed(fn, *args, repeats: int, statistic=statistics.median) -> float:
    """Wall time of ``fn(*args)`` (after one warm-up call), results synchronized: the
    ``statistic`` (median by default; ``min`` for the fastest) of ``repeats`` calls."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return statistic(times)


def synthetic_images(num: int) -> jax.Array:
    """``num`` random 28x28 uint8 images on the device (speed does not depend on pixels)."""
    return jnp.asarray(np.random.default_rng(0).integers(0, 256, (num, 28, 28, 1)), jnp.uint8)


def _run_once(compiled, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return time.perf_counter() - started


def compute_ratios(config, num_seeds: int, repeats: int) -> dict:
    """Compiled epochs only. Single-seed and sweep epochs are timed alternately, and each
    ratio is the median over repeats of sweep / (num_seeds * the single epoch timed next to
    it), so that drifts in machine load cancel."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    program = build_program(
        config, image_shape=(28, 28, 1), preprocessing=preprocessing, num_train_examples=NUM_TRAIN
    )
    images = synthetic_images(NUM_TRAIN)
    streams = [rng.make_streams(seed) for seed in range(num_seeds)]
    states = [program.initial_state(s.init) for s in streams]
    epoch, traced = jnp.int32(0), program.hyperparameters
    train_epoch = program.train_epoch
    programs = {"single": (jax.jit(train_epoch), (states[0], streams[0], images, epoch, traced))}
    stacked = tuple(strategies.stack(trees) for trees in (states, streams, [traced] * num_seeds))
    for strategy in ["map", "vmap"] + (["shard"] if jax.device_count() > 1 else []):
        placed_states, placed_streams, placed_traced = strategies.place(
            stacked, strategy, num_seeds
        )
        epoch_fn = jax.jit(strategies.multi_run_epoch(train_epoch, strategy))
        programs[strategy] = (
            epoch_fn, (placed_states, placed_streams, images, epoch, placed_traced)
        )  # fmt: skip
    compiled = {name: (fn.lower(*args).compile(), args) for name, (fn, args) in programs.items()}
    seconds = {name: [] for name in compiled}
    for _ in range(repeats):
        for name, (program, args) in compiled.items():
            seconds[name].append(_run_once(program, *args))
    single = seconds.pop("single")
    ratios = {
        name: statistics.median(t / (num_seeds * s) for t, s in zip(times, single, strict=True))
        for name, times in seconds.items()
    }
    return {
        "single_seed_epoch_seconds": single,
        "sweep_epoch_seconds": seconds,
        "ratios": ratios,
    }


def _data_dir_with_fashion_mnist() -> str:
    """The default data dir if Fashion-MNIST is prepared there, else a temporary one with a
    synthetic stand-in of the same size (speed does not depend on the pixels)."""
    if (catalog.local_dataset_dir(None, "fashion_mnist") / "dataset_info.json").exists():
        return ""
    from vae_jax.data import idx, ingest

    root = Path(tempfile.mkdtemp(prefix="vae_jax_bench_"))
    generator = np.random.default_rng(0)
    for prefix, num in (("train", 60000), ("t10k", 10000)):
        idx.write_idx(
            root / f"{prefix}-images-idx3-ubyte", generator.integers(0, 256, (num, 28, 28))
        )
        idx.write_idx(root / f"{prefix}-labels-idx1-ubyte", np.arange(num) % 10)
    ingest.prepare_local("fashion_mnist", root, str(root / "tfds"))
    return str(root / "tfds")


def run_ratios(config, num_seeds: int, epochs: int = 1) -> dict:
    from vae_jax.single_run import train_and_evaluate
    from vae_jax.sweep.runner import run_sweep

    config = config.copy_and_resolve_references()
    config.data.data_dir = _data_dir_with_fashion_mnist()
    config.training.num_epochs = epochs
    with tempfile.TemporaryDirectory(prefix="vae_jax_bench_runs_") as tmp:
        started = time.perf_counter()
        train_and_evaluate(config, Path(tmp) / "single")
        single = time.perf_counter() - started
        seconds = {}
        # `auto` is a fixed rule (map on CPU, vmap/shard on accelerators): nothing to time.
        for strategy in ("map", "vmap"):
            started = time.perf_counter()
            run_sweep(
                config, Path(tmp) / strategy, list(range(num_seeds)),
                strategy=strategy, evaluate=False,
            )  # fmt: skip
            seconds[strategy] = time.perf_counter() - started
    return {
        "epochs": epochs,
        "single_run_seconds": single,
        "sweep_seconds": seconds,
        "ratios": {s: t / (num_seeds * single) for s, t in seconds.items()},
    }


def sweep_over_sequential(config, *, num_seeds: int = 8, repeats: int = 3) -> dict:
    return {
        "num_seeds": num_seeds,
        "runs": run_ratios(config, num_seeds),
        "compute": compute_ratios(config, num_seeds, repeats),
        "target": 1.0,
    }
