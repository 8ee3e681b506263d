"""Speed of vae-jax on this machine, as ratios measured inside one run.

Timings on shared machines are noisy, so every number is reported next to a reference
measured in the same process: the FLOP/s of a large float32 matrix product (the best this
backend does), or, for sweeps, the same work done seed by seed.

    python scripts/benchmark.py                      # all sections
    python scripts/benchmark.py --sections=training --json=benchmarks/training.json

Sections:
  training    default MLP config, batch 128: examples/s and achieved FLOP/s of training as
              a fraction of the matrix-product FLOP/s (target >= 0.7), with a breakdown of
              where a step's time goes.
  evaluation  importance-weighted test NLL at K=5000: examples/s and the same fraction
              (target >= 0.7).
  sweep       wall time of an 8-seed sweep divided by 8 single-seed runs of the same
              length, per strategy (target <= 1.0 on this CPU).
"""

import itertools
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from sweep_benchmark import NUM_TRAIN, synthetic_images  # scripts/, this file's directory

from experiments.configs import fashion_mlp
from vae_jax import manifest, rng
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.evaluation import per_example
from vae_jax.train_state import create_train_state
from vae_jax.training import step as step_lib
from vae_jax.training.trainer import trainer_from_config

_SECTIONS = flags.DEFINE_list("sections", ["training", "evaluation", "sweep"], "What to measure.")
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (the median is reported).")
_BATCH_SIZES = flags.DEFINE_list(
    "train_batch_sizes", ["128", "512"], "Training batch sizes (the target applies to 128)."
)

TARGET_FRACTION = 0.7


def timed(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` (after one warm-up call), results synchronized."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_gflops(size: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of a large float32 matrix product: the reference every fraction divides by."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    seconds = timed(jax.jit(jnp.matmul), a, b, repeats=repeats)
    return 2 * size**3 / seconds / 1e9


def dense_layers(config, image_size: int) -> list[tuple[int, int]]:
    """(inputs, outputs) of every dense layer of the MLP VAE (encoder, then decoder)."""
    hidden = list(config.model.hidden_sizes)
    latent = config.model.latent_dim
    encoder = list(zip([image_size, *hidden], [*hidden, 2 * latent], strict=True))
    decoder_sizes = [latent, *hidden[::-1], image_size]
    decoder = list(itertools.pairwise(decoder_sizes))
    return encoder + decoder


def matmul_flops(config, image_size: int = 784) -> dict[str, float]:
    """Matrix-product FLOPs per example: forward passes, and a training step (forward,
    weight gradients, input gradients except for the data)."""
    layers = dense_layers(config, image_size)
    num_encoder = len(config.model.hidden_sizes) + 1
    encoder = sum(2 * i * o for i, o in layers[:num_encoder])
    decoder = sum(2 * i * o for i, o in layers[num_encoder:])
    first = 2 * layers[0][0] * layers[0][1]
    return {
        "encoder_forward": encoder,
        "decoder_forward": decoder,
        "train_step": 3 * (encoder + decoder) - first,
    }


def bench_training(config, peak: float, repeats: int) -> dict:
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    trainer = trainer_from_config(config, (28, 28, 1), preprocessing, NUM_TRAIN)
    images = synthetic_images(NUM_TRAIN)
    streams = rng.make_streams(0)
    state = create_train_state(trainer.vae, trainer.optimizer, streams.init)
    compiled = jax.jit(trainer.train_epoch).lower(state, streams, images, jnp.int32(0)).compile()
    seconds = timed(lambda: compiled(state, streams, images, jnp.int32(0)), repeats=repeats)
    examples_per_second = NUM_TRAIN / seconds
    flops = matmul_flops(config)
    achieved = flops["train_step"] * examples_per_second / 1e9
    batch_size = config.training.batch_size
    xla_flops_per_example = xla_counted_step_flops(trainer, state, batch_size) / batch_size
    return {
        "batch_size": config.training.batch_size,
        "epoch_seconds": seconds,
        "examples_per_second": examples_per_second,
        "matmul_gflop_per_example": flops["train_step"] / 1e9,
        "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / peak,
        "xla_counted_gflop_per_example": xla_flops_per_example / 1e9,
        "xla_counted_fraction_of_matmul": xla_flops_per_example * examples_per_second / 1e9 / peak,
        "target": TARGET_FRACTION,
        "step_breakdown_ms": step_breakdown(trainer, state, images, batch_size, repeats),
    }


def xla_counted_step_flops(trainer, state, batch_size: int) -> float:
    """FLOPs XLA counts in one compiled train step (every op, not only matrix products;
    the scanned epoch's loop body is not counted by XLA's cost analysis)."""
    x = jnp.zeros((batch_size, 28, 28, 1), jnp.float32)
    batch = step_lib.Batch(x, jnp.ones((batch_size,), bool))
    compiled = jax.jit(trainer.train_step).lower(state, batch, jax.random.key(0)).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", 0.0))


def step_breakdown(trainer, state, images, batch_size: int, repeats: int) -> dict[str, float]:
    """Where one step's time goes: the model's forward+backward pass, the optimizer update,
    and the dynamic binarization draw, each compiled and timed on its own."""
    stored = images[:batch_size]
    key = jax.random.key(0)
    x = jax.random.bernoulli(key, stored / 255.0).astype(jnp.float32)
    mask = jnp.ones((batch_size,), bool)
    vae = trainer.vae

    def loss(params):
        return -vae.elbo(params, key, x).elbo.mean()

    grad = jax.jit(jax.grad(loss))
    grads = grad(state.params)
    update = jax.jit(trainer.optimizer.update)
    binarize = jax.jit(lambda k, s: jax.random.bernoulli(k, s.astype(jnp.float32) / 255.0))
    step = jax.jit(trainer.train_step)
    batch = step_lib.Batch(x, mask)
    per_step = {
        "forward_backward": timed(grad, state.params, repeats=repeats * 20),
        "optimizer_update": timed(
            update, grads, state.opt_state, state.params, repeats=repeats * 20
        ),
        "dynamic_binarization": timed(binarize, key, stored, repeats=repeats * 20),
        "whole_train_step": timed(step, state, batch, key, repeats=repeats * 20),
    }
    return {name: seconds * 1e3 for name, seconds in per_step.items()}


def bench_evaluation(config, peak: float, repeats: int, k: int = 5000, num: int = 100) -> dict:
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    trainer = trainer_from_config(config, (28, 28, 1), preprocessing, NUM_TRAIN)
    vae = trainer.vae
    params = jax.jit(vae.init)(jax.random.key(0))
    images = jnp.asarray(
        np.random.default_rng(1).integers(0, 2, (config.evaluation.batch_size, 28, 28, 1)),
        jnp.uint8,
    )
    chunk = config.evaluation.importance_chunk_size
    evaluate_batch = per_example.make_batch_evaluator(
        lambda p, key, x: vae.iwae_bound(p, key, x, num_samples=k, chunk_size=chunk),
        preprocessing,
    )
    indices = np.arange(config.evaluation.batch_size)
    seconds = timed(evaluate_batch, params, jax.random.key(2), images, indices, repeats=repeats)
    examples_per_second = config.evaluation.batch_size / seconds
    flops = matmul_flops(config)
    per_example_flops = flops["encoder_forward"] + k * flops["decoder_forward"]
    achieved = per_example_flops * examples_per_second / 1e9
    return {
        "num_importance_samples": k,
        "importance_chunk_size": chunk,
        "batch_size": config.evaluation.batch_size,
        "examples_per_second": examples_per_second,
        "seconds_for_10000_test_examples": 10000 / examples_per_second,
        "matmul_gflop_per_example": per_example_flops / 1e9,
        "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / peak,
        "target": TARGET_FRACTION,
    }


def bench_sweep(config, repeats: int) -> dict:
    import sweep_benchmark

    return sweep_benchmark.sweep_over_sequential(config, num_seeds=8, repeats=repeats)


def main(argv):
    del argv
    config = fashion_mlp.get_config()
    results = {"environment": manifest.environment(), "sections": {}}
    peak = matmul_gflops(repeats=_REPEATS.value)
    results["matmul_gflops"] = peak
    print(f"reference: float32 4096x4096 matrix product {peak:.1f} GFLOP/s")
    if "training" in _SECTIONS.value:
        results["sections"]["training"] = {}
        for batch_size in map(int, _BATCH_SIZES.value):
            config.training.batch_size = batch_size
            r = bench_training(config, peak, _REPEATS.value)
            results["sections"]["training"][f"batch_{batch_size}"] = r
            print(
                f"training (batch {batch_size}): {r['examples_per_second']:.0f} examples/s, "
                f"{r['achieved_gflops']:.1f} GFLOP/s = {r['fraction_of_matmul']:.2f} of the "
                f"matrix product (target >= {TARGET_FRACTION} at batch 128); counting every "
                f"op XLA counts: {r['xla_counted_fraction_of_matmul']:.2f}"
            )
            print("  per step (ms): " + ", ".join(
                f"{k} {v:.2f}" for k, v in r["step_breakdown_ms"].items()))  # fmt: skip
        config.training.batch_size = 128
    if "evaluation" in _SECTIONS.value:
        r = bench_evaluation(config, peak, _REPEATS.value)
        results["sections"]["evaluation"] = r
        print(
            f"evaluation (K={r['num_importance_samples']}): {r['examples_per_second']:.1f} "
            f"examples/s ({r['seconds_for_10000_test_examples'] / 60:.1f} min for 10000), "
            f"{r['achieved_gflops']:.1f} GFLOP/s = {r['fraction_of_matmul']:.2f} of the matrix "
            f"product (target >= {TARGET_FRACTION})"
        )
    if "sweep" in _SECTIONS.value:
        r = bench_sweep(config, _REPEATS.value)
        results["sections"]["sweep"] = r
        for strategy, ratio in r["runs"]["ratios"].items():
            print(f"sweep of {r['num_seeds']} seeds, {strategy}: {ratio:.2f} of {r['num_seeds']} "
                  f"single-seed runs of {r['runs']['epochs']} epoch (target <= 1.0)")  # fmt: skip
        for strategy, ratio in r["compute"]["ratios"].items():
            print(f"  compiled epoch only, {strategy}: {ratio:.2f} of {r['num_seeds']} "
                  "single-seed epochs")  # fmt: skip
    if _JSON.value:
        Path(_JSON.value).parent.mkdir(parents=True, exist_ok=True)
        Path(_JSON.value).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
