"""Speed of vae-jax on this machine, as ratios measured inside one run.

Timings on shared machines are noisy, so every number is reported next to a reference
measured in the same process: the FLOP/s of a large matrix product in float32 and with
bfloat16 operands (float32 accumulation), the best this backend does in each precision;
for sweeps, the same work done seed by seed.

    python scripts/benchmark.py                      # training, evaluation, sweep
    python scripts/benchmark.py --sections=training --json=benchmarks/training.json
    python scripts/benchmark.py --sections=evaluation_bias,evaluate_command --workdir=runs/x
    python scripts/benchmark.py --sections=ais --compute_dtypes=float32

Sections:
  training          default MLP config, batch 128, per model.compute_dtype: examples/s as a
                    fraction of that precision's matrix-product rate; the forward+backward
                    pass alone (target >= 0.85 in float32) and the whole step against its
                    floor (the pass at the matrix-product rate plus one optimizer update and
                    the binarization draw, target <= 1.2x); bfloat16 against float32.
  evaluation        importance-weighted test NLL at K=5000 per evaluation.compute_dtype:
                    examples/s and the fraction of the matrix-product rate (float32 target
                    >= 0.9), bfloat16 against float32 (target >= 2x).
  evaluation_bias   (needs --workdir, a trained run) the bfloat16 bound minus the float32
                    bound on the same test images with the same keys, in nats (target
                    |bias| <= 0.05).
  evaluate_command  (needs --workdir) the whole evaluation of that run (every test image,
                    its config's K) and how its time splits: the bound against the rest
                    (compile, test ELBO, diagnostics, I(x;z), figures; target <= 10%).
  ais               AIS log p(x) (T=20 steps, 16 chains, 10 leapfrog steps) per
                    evaluation.compute_dtype: examples/s and the fraction of the
                    matrix-product rate, beside the K=5000 bound's (target: as close as the
                    bound's, about 0.85 in float32). Each leapfrog step is one decoder pass
                    and its gradient with respect to z.
  sweep             wall time of an 8-seed sweep divided by 8 single-seed runs of the same
                    length, per strategy (target <= 1.0 on this CPU).
  grid              a 4x2 grid (KL weight x learning rate) with 2 seeds as one sweep
                    command against its 16 train commands one after another (target
                    <= 0.5), and its compiled epoch against 16 single-run epochs.
  flax_example      our compiled epoch against the official Flax VAE example's loop (one
                    jitted train_step per batch, batches binarized by numpy on the host;
                    scripts/flax_example_benchmark.py), interleaved, at the example's
                    784-500-20 model and at our default one, per compute dtype, batch 128:
                    examples/s of each and ours / the example's (targets >= 1.1 in float32,
                    >= 1.4 in bfloat16); where our step's time goes (its products at the
                    matrix-product rate, the optimizer update, the binarization's random
                    bits, the metrics). --flax_example_num_train sizes the epochs;
                    --epoch_unroll=2 times our epoch with training.epoch_unroll=2.
  reproduction      each reproduced row's training step (experiments/reproductions/rows.py,
                    --rows) against its floor: its products at the matrix-product rate, one
                    optimizer update and its binarization bits (target <= 1.3x).
  iwae              the IWAE objective's training step at k = 50 on the default model against
                    the same floor (target <= 1.3x).

Sections sized for an accelerator (--sections=accelerator runs them all; --preset=gpu|tiny
sizes them; scripts/accelerator_check.sh runs them on a lent GPU):
  accelerator_training    the compiled epoch of the default model, float32 and bfloat16, at
                          batch 128 and a large batch: examples/s and their fraction of the
                          preset-sized matrix product.
  accelerator_evaluation  the K=5000 bound at the config's batch and chunk and at a larger
                          setting: examples/s, fraction of the product, bfloat16 / float32.
  epoch_vs_loop           the compiled epoch (one lax.scan) against a Python loop calling the
                          same step jitted (the Flax examples' way), and their parameters.
  seed_sweep              one epoch of 8 seeds in one program (map, vmap, shard) against 8
                          single-seed epochs, and seed 0 against its single run.
  deterministic_rerun     (needs fashion_mnist prepared in --data_dir) a run trained with
                          runtime.deterministic_gpu_ops=true in a fresh process, re-run by
                          experiments.reproduce and compared bit for bit (the gpu preset also
                          does it without the flag).
"""

import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import reproduction_benchmark  # scripts/, this file's directory
from absl import app, flags
from sweep_benchmark import NUM_TRAIN, synthetic_images, timed

from experiments.configs import fashion_mlp
from vae_jax import adapter
from vae_jax.core import rng
from vae_jax.data import batching, load_dataset
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.evaluation import per_example, vae_ais
from vae_jax.evaluation.ais import HMCSettings
from vae_jax.run import loading, manifest, runtime
from vae_jax.training import step as step_lib
from vae_jax.training.program import build_program

_SECTIONS = flags.DEFINE_list(
    "sections", ["training", "evaluation", "sweep", "grid"], "What to measure."
)
_JSON = flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repetitions (the median is reported).")
_BATCH_SIZES = flags.DEFINE_list(
    "train_batch_sizes", ["128"], "Training batch sizes (the targets apply to 128)."
)
_COMPUTE_DTYPES = flags.DEFINE_list(
    "compute_dtypes", ["float32", "bfloat16"], "Precisions of the training and evaluation sections."
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "A trained run, for the evaluation_bias and evaluate_command sections."
)
_BIAS_EXAMPLES = flags.DEFINE_integer(
    "bias_examples", 500, "Test images of the evaluation_bias section."
)
_MATMUL_SIZE = flags.DEFINE_integer(
    "matmul_size", 4096, "Size of the reference product (a smaller one for smoke runs)."
)
_ROWS = flags.DEFINE_list(
    "rows",
    ["fashion_vae", "fashion_vampprior", "fashion_hvae", "fashion_hvae_vampprior"],
    "reproduction: rows of the reproduced table (experiments/reproductions/rows.py).",
)
_ROW_NUM_TRAIN = flags.DEFINE_integer(
    "row_num_train", 2000, "reproduction: synthetic images per timed epoch of each row."
)
_EPOCH_UNROLL = flags.DEFINE_integer(
    "epoch_unroll",
    None,
    "training.epoch_unroll of our epoch in the flax_example and reproduction sections "
    "(default: the config's).",
)
_FLAX_EXAMPLE_NUM_TRAIN = flags.DEFINE_integer(
    "flax_example_num_train", NUM_TRAIN, "Synthetic images per epoch of the flax_example section."
)

TARGETS = {
    "forward_backward_fraction": 0.85,
    "step_over_floor": 1.2,
    "evaluation_fraction": 0.9,
    "bfloat16_evaluation_speedup": 2.0,
    "bfloat16_bias_nats": 0.05,
    "evaluate_rest_fraction": 0.10,
    "grid_over_single_commands": 0.5,
    # our compiled epoch / the Flax example's loop, at its model and at ours (issue 32)
    "over_flax_example_float32": 1.1,
    "over_flax_example_bfloat16": 1.4,
    # each reproduced row's training step against its floor (issue 27)
    "row_step_over_floor": 1.3,
    # the IWAE objective's training step at k = 50 against its floor (issue 32)
    "iwae_step_over_floor": 1.3,
}
AT_MOST = {
    "step_over_floor",
    "row_step_over_floor",
    "iwae_step_over_floor",
    "bfloat16_bias_nats",
    "evaluate_rest_fraction",
    "grid_over_single_commands",
}


def matmul_gflops(dtype: str = "float32", size: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of a large matrix product with ``dtype`` operands, accumulated in float32:
    the reference every fraction of that precision divides by."""
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    product = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    return 2 * size**3 / timed(product, a, b, repeats=repeats) / 1e9


def matmul_rates(repeats: int, size: int = 4096) -> dict[str, float]:
    """Both references, each the median of ``repeats`` interleaved measurements."""
    rates = {dtype: [] for dtype in ("float32", "bfloat16")}
    for _ in range(repeats):
        for dtype in rates:
            rates[dtype].append(matmul_gflops(dtype, size, repeats=1))
    return {dtype: statistics.median(values) for dtype, values in rates.items()}


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


def bench_training(config, rate: float, repeats: int) -> dict:
    """Examples/s of the compiled epoch and where a step's time goes; ``rate`` is the
    matrix-product GFLOP/s of ``config.model.compute_dtype``."""
    program = program_of(config, NUM_TRAIN)
    trainer = program.trainer()
    images = synthetic_images(NUM_TRAIN)
    streams = rng.make_streams(0)
    state = program.initial_state(streams.init)
    # The epoch a run compiles: its hyperparameters are inputs (vae_jax/hyperparameters.py).
    traced = program.hyperparameters
    compiled = (
        jax.jit(program.train_epoch).lower(state, streams, images, jnp.int32(0), traced).compile()
    )
    seconds = timed(lambda: compiled(state, streams, images, jnp.int32(0), traced), repeats=repeats)
    examples_per_second = NUM_TRAIN / seconds
    flops = matmul_flops(config)
    achieved = flops["train_step"] * examples_per_second / 1e9
    batch_size = config.training.batch_size
    breakdown = step_breakdown(trainer, state, images, batch_size, repeats, program.preprocessing)
    step_gflop = flops["train_step"] * batch_size / 1e9
    pass_at_rate_ms = step_gflop / rate * 1e3
    # the matrix products at the matrix-product rate, one optimizer update (a memory pass
    # over parameters, gradients and moments) and the binarization's random bits
    floor_ms = pass_at_rate_ms + breakdown["optimizer_update"] + breakdown["dynamic_binarization"]
    return {
        "compute_dtype": config.model.compute_dtype,
        "batch_size": batch_size,
        "epoch_seconds": seconds,
        "examples_per_second": examples_per_second,
        "matmul_gflop_per_example": flops["train_step"] / 1e9,
        "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / rate,
        "step_breakdown_ms": breakdown,
        "forward_backward_fraction_of_matmul": pass_at_rate_ms / breakdown["forward_backward"],
        "step_floor_ms": floor_ms,
        "step_over_floor": breakdown["whole_train_step"] / floor_ms,
    }


def step_breakdown(
    trainer, state, images, batch_size: int, repeats: int, preprocessing
) -> dict[str, float]:
    """Where one step's time goes: the model's forward+backward pass, the optimizer update,
    and the dynamic binarization draw (``preprocessing``'s, of its
    ``binarization_version``), each compiled and timed on its own."""
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
    binarize = jax.jit(lambda k, s: preprocessing.train_input(s, k))
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


def bench_evaluation(config, rate: float, repeats: int, k: int = 5000) -> dict:
    """Examples/s of the K=``k`` bound in ``config.evaluation.compute_dtype`` on one
    evaluation batch; ``rate`` is that precision's matrix-product GFLOP/s."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    vae = adapter.evaluation_vae_from_config(config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    batch_size = config.evaluation.batch_size
    images = jnp.asarray(
        np.random.default_rng(1).integers(0, 2, (batch_size, 28, 28, 1)), jnp.uint8
    )
    chunk = config.evaluation.importance_chunk_size
    evaluate_batch = per_example.make_batch_evaluator(
        lambda p, key, x: vae.iwae_bound(p, key, x, num_samples=k, chunk_size=chunk),
        preprocessing,
    )
    indices = np.arange(batch_size)
    seconds = timed(evaluate_batch, params, jax.random.key(2), images, indices, repeats=repeats)
    examples_per_second = batch_size / seconds
    flops = matmul_flops(config)
    per_example_flops = flops["encoder_forward"] + k * flops["decoder_forward"]
    achieved = per_example_flops * examples_per_second / 1e9
    return {
        "compute_dtype": config.evaluation.compute_dtype,
        "num_importance_samples": k,
        "importance_chunk_size": chunk,
        "batch_size": batch_size,
        "examples_per_second": examples_per_second,
        "seconds_for_10000_test_examples": 10000 / examples_per_second,
        "matmul_gflop_per_example": per_example_flops / 1e9,
        "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / rate,
    }


def ais_matmul_flops(config, options) -> float:
    """Matrix-product FLOPs of one example's AIS: the encoder once, then per chain the
    decoder at the initial state and, per leapfrog step, the decoder and its gradient with
    respect to z (an input gradient costs the forward's products: no weight gradients)."""
    flops = matmul_flops(config)
    transitions = options.num_steps - 1
    per_chain = flops["decoder_forward"] * (1 + 2 * transitions * options.hmc.num_leapfrog_steps)
    return flops["encoder_forward"] + options.num_chains * per_chain


def bench_ais(config, rate: float, repeats: int, num_steps: int = 20) -> dict:
    """Examples/s of AIS (``num_steps`` steps, 16 chains, 10 leapfrog steps) on one
    evaluation batch in ``config.evaluation.compute_dtype``, as a fraction of ``rate``."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    vae = adapter.evaluation_vae_from_config(config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    batch_size = config.evaluation.batch_size
    images = jnp.asarray(
        np.random.default_rng(1).integers(0, 2, (batch_size, 28, 28, 1)), jnp.uint8
    )
    options = vae_ais.AISOptions(
        num_steps=num_steps, num_chains=16, chain_chunk_size=16,
        hmc=HMCSettings(num_leapfrog_steps=10),
    )  # fmt: skip
    evaluate_batch = per_example.make_batch_evaluator(
        lambda p, key, x: vae_ais.log_likelihood(vae, p, key, x, options).log_normalizer,
        preprocessing,
    )
    indices = np.arange(batch_size)
    seconds = timed(evaluate_batch, params, jax.random.key(2), images, indices, repeats=repeats)
    examples_per_second = batch_size / seconds
    per_example_flops = ais_matmul_flops(config, options)
    achieved = per_example_flops * examples_per_second / 1e9
    return {
        "compute_dtype": config.evaluation.compute_dtype,
        "num_steps": num_steps,
        "num_chains": options.num_chains,
        "num_leapfrog_steps": options.hmc.num_leapfrog_steps,
        "batch_size": batch_size,
        "examples_per_second": examples_per_second,
        "matmul_gflop_per_example": per_example_flops / 1e9,
        "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / rate,
    }


def bench_evaluation_bias(workdir: str, num_examples: int) -> dict:
    """The bfloat16 bound minus the float32 bound of a trained run, per test image with the
    same keys (the run's test_iwae keys), at its config's K and chunk size."""
    _, params, config = loading.load_run(workdir)
    dataset = load_dataset(config)
    images = dataset.test.images[:num_examples]
    key = rng.eval_key(rng.make_streams(int(config.seed)).eval, "test_iwae")
    k, chunk = config.evaluation.num_importance_samples, config.evaluation.importance_chunk_size
    bounds, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        config.evaluation.compute_dtype = dtype
        vae = adapter.evaluation_vae_from_config(config, dataset.image_shape)
        evaluate_batch = per_example.make_batch_evaluator(
            lambda p, key, x, vae=vae: vae.iwae_bound(p, key, x, num_samples=k, chunk_size=chunk),
            dataset.preprocessing,
        )
        started = time.perf_counter()
        bounds[dtype] = per_example.evaluate_examples(
            evaluate_batch, params, key, images, config.evaluation.batch_size
        ).astype(np.float64)
        seconds[dtype] = time.perf_counter() - started
    difference = bounds["bfloat16"] - bounds["float32"]
    return {
        "workdir": str(workdir),
        "num_examples": int(images.shape[0]),
        "num_importance_samples": int(k),
        "float32_nll_nats": float(-bounds["float32"].mean()),
        "bfloat16_nll_nats": float(-bounds["bfloat16"].mean()),
        # NLL(bfloat16) - NLL(float32): positive when bfloat16 reports a worse likelihood
        "bias_nats": float(-difference.mean()),
        "bias_standard_error": float(difference.std(ddof=1) / np.sqrt(difference.size)),
        "max_abs_difference_per_example": float(np.abs(difference).max()),
        "speedup_including_compile": seconds["float32"] / seconds["bfloat16"],
    }


def bench_evaluate_command(workdir: str, compute_dtype: str) -> dict:
    """The whole evaluation of a run (as ``python -m experiments.evaluate``) in
    ``compute_dtype`` and its phase timings, from the result ``report.json`` receives."""
    from vae_jax.evaluation.evaluate_run import evaluate_run

    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "run"
        shutil.copytree(workdir, copy)
        started = time.perf_counter()
        result = evaluate_run(copy, compute_dtype=compute_dtype)
        total = time.perf_counter() - started
    timings = result["timings_seconds"]
    bound = timings["test_nll_bound"]
    return {
        "workdir": str(workdir),
        "num_examples": result["num_examples"],
        "num_importance_samples": result["num_importance_samples"],
        "compute_dtype": result.get("compute_dtype", "float32"),
        "seconds": total,
        "timings_seconds": timings,
        "rest_over_bound": (total - bound) / bound,
        "examples_per_second": result["num_examples"] / total,
    }


def bench_sweep(config, repeats: int) -> dict:
    import sweep_benchmark

    return sweep_benchmark.sweep_over_sequential(config, num_seeds=8, repeats=repeats)


def report_ais(measured: dict, rates: dict, repeats: int) -> dict:
    """The ``ais`` section: AIS beside the K=5000 bound (measured here unless the
    ``evaluation`` section already did), per compute dtype, printed as it goes."""
    found = {}
    for dtype in _COMPUTE_DTYPES.value:
        config = fashion_mlp.get_config()
        config.evaluation.compute_dtype = dtype
        r = bench_ais(config, rates[dtype], repeats)
        bound = measured.get("evaluation", {}).get(dtype) or bench_evaluation(
            config, rates[dtype], repeats
        )
        r["iwae_fraction_of_matmul"] = bound["fraction_of_matmul"]
        found[dtype] = r
        print(
            f"AIS ({dtype}, T={r['num_steps']}, {r['num_chains']} chains, "
            f"{r['num_leapfrog_steps']} leapfrog steps): {r['examples_per_second']:.2f} "
            f"examples/s, {r['achieved_gflops']:.1f} GFLOP/s = {r['fraction_of_matmul']:.2f} "
            f"of the {dtype} matrix product; the K=5000 bound: "
            f"{bound['fraction_of_matmul']:.2f}"
        )
    return found


def bench_flax_example(config, num_train: int, rate: float, repeats: int) -> dict:
    """Our compiled epoch against the Flax example's loop at ``config``'s model and compute
    dtype, interleaved (scripts/flax_example_benchmark.py), and where our step's time goes
    (ms): its products at the matrix-product rate ``rate`` (GFLOP/s), the optimizer update,
    the binarization's random bits and the metrics (``metrics_ms``), beside the whole step
    alone, a step of our epoch and one of the example's."""
    import flax_example_benchmark

    program, args = compiled_epoch(config, num_train)
    state, images = args[0], args[2]
    r = flax_example_benchmark.against_compiled_epoch(
        config, program, args, num_train, repeats, images
    )
    built = program_of(config, num_train)
    trainer = built.trainer()
    batch_size = config.training.batch_size
    measured = step_breakdown(trainer, state, images, batch_size, repeats, built.preprocessing)
    x = jnp.asarray(images[:batch_size] > 127, jnp.float32)
    batch = step_lib.Batch(x, jnp.ones((batch_size,), bool))
    metrics = flax_example_benchmark.metrics_ms(
        trainer.train_step, (state, batch, jax.random.key(0)), repeats * 20
    )
    step_gflop = matmul_flops(config)["train_step"] * batch_size / 1e9
    r["our_step_ms"] = {
        "products_at_matmul_rate": step_gflop / rate * 1e3,
        "forward_backward": measured["forward_backward"],
        "optimizer_update": measured["optimizer_update"],
        "binarization_random_bits": measured["dynamic_binarization"],
        "metrics": metrics,
        "whole_train_step": measured["whole_train_step"],
        "in_compiled_epoch": batch_size / r["ours"]["examples_per_second"] * 1e3,
        "flax_example_step": batch_size / r["flax_example"]["examples_per_second"] * 1e3,
    }
    return r


def report_flax_example(rates: dict, repeats: int) -> dict:
    """The ``flax_example`` section: at the example's model and at our default one, per
    compute dtype, printed as it goes."""
    found = {}
    for (model, hidden_sizes), dtype in itertools.product(
        {"example_model": (500,), "default_model": None}.items(), _COMPUTE_DTYPES.value
    ):
        config = fashion_mlp.get_config()
        config.model.compute_dtype = dtype
        if hidden_sizes:
            config.model.hidden_sizes = hidden_sizes
        if _EPOCH_UNROLL.value is not None:
            config.training.epoch_unroll = _EPOCH_UNROLL.value
        r = bench_flax_example(config, _FLAX_EXAMPLE_NUM_TRAIN.value, rates[dtype], repeats)
        found[f"{model}_{dtype}"] = r
        ratio = r["ours_over_flax_example"]
        r["epoch_unroll"] = config.training.epoch_unroll
        print(
            f"against the Flax example ({r['model']}, {dtype}, batch {r['batch_size']}, "
            f"epoch_unroll {config.training.epoch_unroll}): ours "
            f"{r['ours']['examples_per_second']:.0f} examples/s, the example's "
            f"{r['flax_example']['examples_per_second']:.0f}: {ratio:.2f} "
            f"{_verdict(ratio, f'over_flax_example_{dtype}')}"
        )
        print("  our step (ms): " + ", ".join(
            f"{k} {v:.2f}" for k, v in r["our_step_ms"].items()))  # fmt: skip
    return found


def _verdict(value: float, name: str) -> str:
    """``(target >= t: met)`` for the target ``TARGETS[name]``."""
    target, at_most = TARGETS[name], name in AT_MOST
    met = value <= target if at_most else value >= target
    return f"(target {'<=' if at_most else '>='} {target}: {'met' if met else 'NOT met'})"


def main(argv):
    del argv
    sections, repeats = expand_sections(_SECTIONS.value), _REPEATS.value
    check_accelerator_inputs(sections)
    if {"evaluation_bias", "evaluate_command"} & set(sections) and not _WORKDIR.value:
        raise app.UsageError("--sections=evaluation_bias/evaluate_command need --workdir")
    results = {"environment": manifest.environment(), "targets": TARGETS, "sections": {}}
    if set(sections) - set(ACCELERATOR_SECTIONS):  # those measure their own reference
        rates = matmul_rates(repeats, _MATMUL_SIZE.value)
        results["matmul_gflops"] = rates
        print(
            f"reference: {_MATMUL_SIZE.value}x{_MATMUL_SIZE.value} matrix product, "
            f"float32 {rates['float32']:.1f} GFLOP/s, "
            f"bfloat16 operands {rates['bfloat16']:.1f} GFLOP/s "
            f"({rates['bfloat16'] / rates['float32']:.2f}x)"
        )
    if "training" in sections:
        results["sections"]["training"] = training = {}
        for batch_size, dtype in itertools.product(map(int, _BATCH_SIZES.value),
                                                   _COMPUTE_DTYPES.value):  # fmt: skip
            config = fashion_mlp.get_config()
            config.training.batch_size, config.model.compute_dtype = batch_size, dtype
            r = bench_training(config, rates[dtype], repeats)
            training[f"batch_{batch_size}_{dtype}"] = r
            print(
                f"training ({dtype}, batch {batch_size}): {r['examples_per_second']:.0f} "
                f"examples/s, {r['achieved_gflops']:.1f} GFLOP/s = "
                f"{r['fraction_of_matmul']:.2f} of the {dtype} matrix product"
            )
            pass_fraction = r["forward_backward_fraction_of_matmul"]
            print(
                f"  forward+backward pass at {pass_fraction:.2f} of the matrix product "
                f"{_verdict(pass_fraction, 'forward_backward_fraction')}; "
                f"step {r['step_over_floor']:.2f}x its floor of {r['step_floor_ms']:.2f} ms "
                f"{_verdict(r['step_over_floor'], 'step_over_floor')}"
            )
            print("  per step (ms): " + ", ".join(
                f"{k} {v:.2f}" for k, v in r["step_breakdown_ms"].items()))  # fmt: skip
        for batch_size in map(int, _BATCH_SIZES.value):
            f32, bf16 = (training.get(f"batch_{batch_size}_{d}") for d in ("float32", "bfloat16"))
            if f32 and bf16:
                ratio = bf16["examples_per_second"] / f32["examples_per_second"]
                training[f"batch_{batch_size}_bfloat16_over_float32"] = ratio
                print(f"  bfloat16 / float32 training examples/s (batch {batch_size}): "
                      f"{ratio:.2f}")  # fmt: skip
    if "evaluation" in sections:
        results["sections"]["evaluation"] = evaluation = {}
        for dtype in _COMPUTE_DTYPES.value:
            config = fashion_mlp.get_config()
            config.evaluation.compute_dtype = dtype
            r = bench_evaluation(config, rates[dtype], repeats)
            evaluation[dtype] = r
            print(
                f"evaluation ({dtype}, K={r['num_importance_samples']}): "
                f"{r['examples_per_second']:.1f} examples/s "
                f"({r['seconds_for_10000_test_examples'] / 60:.1f} min for 10000), "
                f"{r['achieved_gflops']:.1f} GFLOP/s = {r['fraction_of_matmul']:.2f} of the "
                f"{dtype} matrix product"
                + (
                    f" {_verdict(r['fraction_of_matmul'], 'evaluation_fraction')}"
                    if dtype == "float32"
                    else ""
                )
            )
        if {"float32", "bfloat16"} <= set(evaluation):
            ratio = (evaluation["bfloat16"]["examples_per_second"]
                     / evaluation["float32"]["examples_per_second"])  # fmt: skip
            evaluation["bfloat16_over_float32"] = ratio
            print(
                f"  bfloat16 / float32 evaluation examples/s: {ratio:.2f} "
                f"{_verdict(ratio, 'bfloat16_evaluation_speedup')}"
            )
    if "ais" in sections:
        results["sections"]["ais"] = report_ais(results["sections"], rates, repeats)
    if "evaluation_bias" in sections:
        r = bench_evaluation_bias(_WORKDIR.value, _BIAS_EXAMPLES.value)
        results["sections"]["evaluation_bias"] = r
        print(
            f"bfloat16 evaluation bias on {r['num_examples']} test images of {r['workdir']} "
            f"(K={r['num_importance_samples']}): NLL {r['bfloat16_nll_nats']:.3f} against "
            f"{r['float32_nll_nats']:.3f} nats, bias {r['bias_nats']:+.4f} +- "
            f"{r['bias_standard_error']:.4f} {_verdict(abs(r['bias_nats']), 'bfloat16_bias_nats')}"
        )
    if "evaluate_command" in sections:
        results["sections"]["evaluate_command"] = {}
        for dtype in _COMPUTE_DTYPES.value:
            r = bench_evaluate_command(_WORKDIR.value, dtype)
            results["sections"]["evaluate_command"][dtype] = r
            print(
                f"evaluate ({r['compute_dtype']}, {r['num_examples']} test images, "
                f"K={r['num_importance_samples']}): {r['seconds']:.1f} s, the rest "
                f"{r['rest_over_bound']:.3f} of the bound's time "
                f"{_verdict(r['rest_over_bound'], 'evaluate_rest_fraction')}; phases (s): "
                + ", ".join(f"{k} {v:.1f}" for k, v in r["timings_seconds"].items())
            )
    if "sweep" in sections:
        r = bench_sweep(fashion_mlp.get_config(), repeats)
        results["sections"]["sweep"] = r
        for strategy, ratio in r["runs"]["ratios"].items():
            print(f"sweep of {r['num_seeds']} seeds, {strategy}: {ratio:.2f} of {r['num_seeds']} "
                  f"single-seed runs of {r['runs']['epochs']} epoch (target <= 1.0)")  # fmt: skip
        for strategy, ratio in r["compute"]["ratios"].items():
            print(f"  compiled epoch only, {strategy}: {ratio:.2f} of {r['num_seeds']} "
                  "single-seed epochs")  # fmt: skip
    if "grid" in sections:
        import grid_benchmark

        r = grid_benchmark.grid_over_single_runs(fashion_mlp.get_config(), repeats=repeats)
        results["sections"]["grid"] = r
        commands, ratio = r["commands"], r["commands"]["ratio"]
        print(f"grid of 4x2 cells x 2 seeds, {commands['epochs']} epoch: one sweep command "
              f"{commands['grid_command_seconds']:.1f} s, 16 train commands "
              f"{commands['single_commands_seconds']:.1f} s: {ratio:.2f} "
              f"{_verdict(ratio, 'grid_over_single_commands')}")  # fmt: skip
        print(f"  compiled epoch of the 16 runs (map): {r['compiled_epoch']['ratio']:.2f} of "
              "16 single-run epochs")  # fmt: skip
    if "flax_example" in sections:
        results["sections"]["flax_example"] = report_flax_example(rates, repeats)
    if "reproduction" in sections:
        results["sections"]["reproduction"] = report_reproduction(rates, repeats)
    if "iwae" in sections:
        results["sections"]["iwae"] = report_iwae(rates, repeats)
    failed = []
    if set(ACCELERATOR_SECTIONS) & set(sections):
        failed = run_accelerator_sections(sections, results)
    if _JSON.value:
        Path(_JSON.value).parent.mkdir(parents=True, exist_ok=True)
        Path(_JSON.value).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {_JSON.value}")
    if failed:
        raise SystemExit(f"accelerator sections failed: {', '.join(failed)}")


def report_reproduction(rates: dict, repeats: int) -> dict:
    """Each reproduced row's step against its floor (target: at most 1.3x) and its
    protocol epoch's estimated seconds (scripts/reproduction_benchmark.py)."""
    rows = reproduction_benchmark.bench_rows(
        _ROWS.value, rates["float32"], repeats, _ROW_NUM_TRAIN.value, _EPOCH_UNROLL.value
    )
    for name, r in rows.items():
        print(
            f"reproduction {name} (epoch_unroll {r['epoch_unroll']}): step {r['step_ms']:.1f} ms, "
            f"floor {r['floor_ms']:.1f} ms "
            f"({r['product_gflop_per_step']:.2f} GFLOP of products), step/floor "
            f"{r['step_over_floor']:.2f} {_verdict(r['step_over_floor'], 'row_step_over_floor')}"
            f"; a 50,000-image epoch ~{r['protocol_epoch_seconds']:.1f} s"
        )
    return rows


IWAE_SAMPLES = 50


def report_iwae(rates: dict, repeats: int) -> dict:
    """The IWAE objective's training step at k = 50 on the default model (batch 128, float32)
    against its floor, as the reproduced rows' (scripts/reproduction_benchmark.py)."""
    config = fashion_mlp.get_config()
    config.objective.name = "iwae"
    config.objective.num_samples = IWAE_SAMPLES
    r = reproduction_benchmark.bench_row(config, rates["float32"], repeats, _ROW_NUM_TRAIN.value)
    r.pop("protocol_epoch_seconds")  # the reproduction's protocol, not this config's
    r["num_samples"] = IWAE_SAMPLES
    print(
        f"iwae k={IWAE_SAMPLES}, default model: step {r['step_ms']:.1f} ms, floor "
        f"{r['floor_ms']:.1f} ms ({r['product_gflop_per_step']:.2f} GFLOP of products), "
        f"step/floor {r['step_over_floor']:.2f} "
        + _verdict(r["step_over_floor"], "iwae_step_over_floor")
    )
    return r


# --- Sections sized for an accelerator (scripts/accelerator_check.sh runs them) ---------
#
# The measurements the design's claims about accelerators rest on, at the sizes a GPU needs
# (--preset=gpu) or at sizes this CPU runs in seconds (--preset=tiny: the same code paths,
# tested by tests/scripts/test_accelerator_check.py). The model is always the default one
# (fashion_mlp); every rate is a fraction of the matrix-product rate that the same process
# measures at the preset's size, with the matmul precision runs use.

_PRESET = flags.DEFINE_enum(
    "preset", "gpu", ["gpu", "tiny"], "Sizes of the accelerator sections (ACCELERATOR_PRESETS)."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", "", "TFDS data dir with fashion_mnist prepared, for deterministic_rerun "
    "('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)."
)  # fmt: skip
_SUMMARY = flags.DEFINE_string(
    "summary", None, "Also write a short text summary of the accelerator sections here."
)

ACCELERATOR_SECTIONS = (
    "accelerator_training",
    "accelerator_evaluation",
    "epoch_vs_loop",
    "seed_sweep",
    "deterministic_rerun",
)
NUM_IMPORTANCE_SAMPLES = 5000  # the K of the standard test NLL
IMAGE_SHAPE = (28, 28, 1)
REPO = Path(__file__).resolve().parents[1]


class AcceleratorPreset(NamedTuple):
    """Sizes of the accelerator sections."""

    matmul_size: int  # the reference product is matmul_size^3 (float32 and bfloat16 operands)
    num_train: int  # synthetic examples in each timed training epoch
    batch_sizes: tuple[int, ...]  # training batches: the default 128 and a large one
    bound_settings: tuple[tuple[int, int], ...]  # (examples per batch, importance chunk size)
    num_seeds: int  # seeds of the sweep
    repeats: int  # timed repetitions after one warm-up (the median is reported)
    rerun_config: str  # config trained for one epoch by deterministic_rerun
    rerun_without_flag: bool  # also rerun without deterministic_gpu_ops: what the flag changes
    rerun_timeout_seconds: int  # per process (train, then reproduce)


ACCELERATOR_PRESETS = {
    # One H200: the config's batch and 32x it; the config's bound setting (batch 50, chunk
    # 50) and one that gives the device 500 000 draws at a time.
    "gpu": AcceleratorPreset(
        matmul_size=8192,
        num_train=54000,
        batch_sizes=(128, 4096),
        bound_settings=((50, 50), (500, 1000)),
        num_seeds=8,
        repeats=5,
        rerun_config="experiments/configs/fashion_mlp.py",
        rerun_without_flag=True,
        rerun_timeout_seconds=240,
    ),
    # This CPU: every code path of the gpu preset, at sizes that take about 70 s of CPU time.
    "tiny": AcceleratorPreset(
        matmul_size=2048,
        num_train=2048,
        batch_sizes=(128, 512),
        bound_settings=((2, 100),),
        num_seeds=8,
        repeats=1,
        rerun_config="experiments/configs/tiny.py",
        rerun_without_flag=False,
        rerun_timeout_seconds=180,
    ),
}


def expand_sections(names: list[str]) -> list[str]:
    """The section names with ``accelerator`` standing for every accelerator section."""
    expanded = []
    for name in names:
        for section in ACCELERATOR_SECTIONS if name == "accelerator" else (name,):
            if section not in expanded:
                expanded.append(section)
    return expanded


def matmul_rates_at(size: int, repeats: int) -> dict[str, float]:
    """GFLOP/s of a ``size``-cubed product with float32 and with bfloat16 operands, each the
    best of ``repeats`` interleaved measurements (at least 5): the best this backend does,
    so that load from other processes lowers the fractions rather than raising them. float32
    runs at the current matmul precision (runs set ``runtime.matmul_precision``)."""
    products = {}
    for dtype in ("float32", "bfloat16"):
        a = jax.random.normal(jax.random.key(0), (size, size), dtype)
        b = jax.random.normal(jax.random.key(1), (size, size), dtype)
        product = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
        products[dtype] = (product.lower(a, b).compile(), a, b)
        jax.block_until_ready(products[dtype][0](a, b))  # warm-up
    rates = {dtype: [] for dtype in products}
    for _ in range(max(repeats, 5)):
        for dtype, (product, a, b) in products.items():
            started = time.perf_counter()
            jax.block_until_ready(product(a, b))
            rates[dtype].append(2 * size**3 / (time.perf_counter() - started) / 1e9)
    return {dtype: max(values) for dtype, values in rates.items()}


_COMPILED_EPOCHS = {}  # (config as JSON, num_train) -> (program, args): each compiled once


def compiled_epoch(config, num_train: int):
    """The epoch a run of ``config`` compiles (hyperparameters as inputs) over ``num_train``
    synthetic images, compiled, and its arguments (seed 0, epoch 0). The program is not
    donating, so sections that time the same config share one compilation."""
    key = (config.to_json_best_effort(sort_keys=True), num_train)
    if key not in _COMPILED_EPOCHS:
        _COMPILED_EPOCHS[key] = _compile_epoch(config, num_train)
    return _COMPILED_EPOCHS[key]


def program_of(config, num_train: int):
    """The program a run of ``config`` trains with (``vae_jax.training.program``), on
    ``num_train`` synthetic images of ``IMAGE_SHAPE`` binarized by the config's protocol."""
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    return build_program(
        config, image_shape=IMAGE_SHAPE, preprocessing=preprocessing, num_train_examples=num_train
    )


def _compile_epoch(config, num_train: int):
    program = program_of(config, num_train)
    streams = rng.make_streams(0)
    state = program.initial_state(streams.init)
    args = (state, streams, synthetic_images(num_train), jnp.int32(0), program.hyperparameters)
    return jax.jit(program.train_epoch).lower(*args).compile(), args


def training_rates(config, num_examples: int, seconds: float, rate: float) -> dict:
    """Examples/s of ``num_examples`` trained in ``seconds``, the matrix-product GFLOP/s
    they amount to and their fraction of ``rate`` (GFLOP/s)."""
    examples_per_second = num_examples / seconds
    achieved = matmul_flops(config)["train_step"] * examples_per_second / 1e9
    return {
        "seconds": seconds,
        "examples_per_second": examples_per_second,
        "achieved_gflops": achieved,
        "fraction_of_matmul": achieved / rate,
    }


def bench_epoch_throughput(config, num_train: int, rate: float, repeats: int) -> dict:
    """Examples/s of the compiled epoch at ``config``'s batch size and compute dtype."""
    program, args = compiled_epoch(config, num_train)
    seconds = timed(program, *args, repeats=repeats)
    batch_size = config.training.batch_size
    return {
        "compute_dtype": config.model.compute_dtype,
        "batch_size": batch_size,
        "num_train": num_train,
        "steps": batching.num_batches(num_train, batch_size),
        "matmul_gflop_per_example": matmul_flops(config)["train_step"] / 1e9,
        **training_rates(config, num_train, seconds, rate),
    }


def python_loop_epoch(config, num_train: int):
    """``train_epoch(state, streams, images, epoch, traced)`` the way the Flax examples
    train: a Python loop that calls one jitted step per batch (the state donated), the
    epoch's batch indices read to the host once. The step is the compiled epoch's scan body
    (``vae_jax/training/step.py``): the same gather, binarization key, latent key and
    update, so both give the same parameters up to XLA's choice of fusions."""
    program = program_of(config, num_train)
    preprocessing = program.preprocessing
    batch_size = config.training.batch_size

    def one_step(state, streams, images, indices, mask, traced):
        trainer = program.trainer(traced)
        x = preprocessing.train_input(images[indices], rng.step_key(streams.binarize, state.step))
        latent_key = rng.step_key(streams.latent, state.step)
        return trainer.train_step(state, step_lib.Batch(x, mask), latent_key)

    step = jax.jit(one_step, donate_argnums=0)
    order = jax.jit(
        lambda data_stream, epoch: batching.epoch_batches(
            rng.step_key(data_stream, epoch), num_train, batch_size
        )
    )

    def train_epoch(state, streams, images, epoch, traced):
        indices, mask = jax.device_get(order(streams.data, epoch))
        metrics = []
        for batch_indices, batch_mask in zip(indices, mask, strict=True):
            state, step_metrics = step(state, streams, images, batch_indices, batch_mask, traced)
            metrics.append(step_metrics)
        return state, metrics

    return train_epoch


def timed_from_fresh_state(train_epoch, state, args: tuple, repeats: int):
    """Median seconds of ``train_epoch(state, *args)`` after one warm-up call, each call on
    a copy of ``state`` made before its timing starts (the loop donates it); and the result
    of the last call."""
    times, result = [], None
    for _ in range(repeats + 1):
        fresh = jax.block_until_ready(jax.tree.map(jnp.copy, state))
        started = time.perf_counter()
        result = jax.block_until_ready(train_epoch(fresh, *args))
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]), result


def max_relative_difference(reference, other) -> float:
    """The largest ``|reference - other|`` of any leaf over the largest ``|reference|`` of
    that leaf."""
    worst = 0.0
    for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(other), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(float(np.abs(a).max()), float(np.finfo(np.float32).tiny))
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    return worst


def bit_identical(reference, other) -> bool:
    """Whether every leaf has the same dtype, shape and bits."""
    return all(
        np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(reference), jax.tree.leaves(other), strict=True)
    )


def bench_epoch_against_loop(config, num_train: int, rate: float, repeats: int) -> dict:
    """The compiled epoch (one ``lax.scan``) against a Python loop of the same jitted step,
    both from the same state with the same keys: seconds, rates, the loop's cost per step
    beyond the scan's, and how far their parameters are apart afterwards."""
    program, args = compiled_epoch(config, num_train)
    state = args[0]
    scan_seconds = timed(program, *args, repeats=repeats)
    scan_state, _ = program(*args)
    loop = python_loop_epoch(config, num_train)
    loop_seconds, (loop_state, _) = timed_from_fresh_state(loop, state, args[1:], repeats)
    steps = batching.num_batches(num_train, config.training.batch_size)
    return {
        "batch_size": config.training.batch_size,
        "num_train": num_train,
        "steps": steps,
        "compiled_epoch": training_rates(config, num_train, scan_seconds, rate),
        "python_loop": training_rates(config, num_train, loop_seconds, rate),
        "loop_over_compiled_epoch": loop_seconds / scan_seconds,
        "loop_overhead_per_step_ms": (loop_seconds - scan_seconds) / steps * 1e3,
        "parameters_bit_identical": bit_identical(scan_state.params, loop_state.params),
        "parameters_max_relative_difference": max_relative_difference(
            scan_state.params, loop_state.params
        ),
    }


def bench_seed_sweep_epochs(config, num_train: int, num_seeds: int, rate: float, repeats: int):
    """One epoch of ``num_seeds`` seeds in one compiled program, per strategy (map, vmap,
    and shard when the seeds divide over several devices), against ``num_seeds`` times one
    single-seed epoch timed next to it (ratio: median over repeats, so drifts in load
    cancel); and how far each strategy's seed 0 is from the single run of seed 0."""
    from vae_jax.sweep import strategies

    single_program, single_args = compiled_epoch(config, num_train)  # seed 0
    _, _, images, epoch, traced = single_args
    program = program_of(config, num_train)
    streams = [rng.make_streams(seed) for seed in range(num_seeds)]
    states = [program.initial_state(s.init) for s in streams]
    train_epoch = program.train_epoch
    compiled = {"single": (single_program, single_args)}
    stacked = tuple(strategies.stack(trees) for trees in (states, streams, [traced] * num_seeds))
    names = ["map", "vmap"]
    if jax.device_count() > 1 and num_seeds % jax.device_count() == 0:
        names.append("shard")
    for strategy in names:
        placed_states, placed_streams, placed_traced = strategies.place(
            stacked, strategy, num_seeds
        )
        sweep_args = (placed_states, placed_streams, images, epoch, placed_traced)
        sweep_epoch = jax.jit(strategies.multi_run_epoch(train_epoch, strategy))
        compiled[strategy] = (sweep_epoch.lower(*sweep_args).compile(), sweep_args)
    seconds = {name: [] for name in compiled}
    outputs = {}
    for round_index in range(repeats + 1):  # round 0 warms up
        for name, (program, args) in compiled.items():
            started = time.perf_counter()
            outputs[name] = jax.block_until_ready(program(*args))
            if round_index:
                seconds[name].append(time.perf_counter() - started)
    single = seconds.pop("single")
    single_params = outputs["single"][0].params
    result = {
        "num_seeds": num_seeds,
        "num_train": num_train,
        "batch_size": config.training.batch_size,
        "single_seed_epoch": training_rates(config, num_train, statistics.median(single), rate),
        "strategies": {},
    }
    for name, times in seconds.items():
        seed_zero = strategies.take(outputs[name][0], 0).params
        result["strategies"][name] = {
            **training_rates(config, num_seeds * num_train, statistics.median(times), rate),
            "over_single_seed_epochs": statistics.median(
                t / (num_seeds * s) for t, s in zip(times, single, strict=True)
            ),
            "seed_0_bit_identical_to_single": bit_identical(single_params, seed_zero),
            "seed_0_max_relative_difference": max_relative_difference(single_params, seed_zero),
        }
    return result


def _entry_point(module: str, args: list[str], timeout: int):
    """``python -m module args`` from the repository root in a fresh process; it allocates
    device memory as it needs it (this process already holds most of it)."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def rerun_compared_bit_for_bit(preset: AcceleratorPreset, data_dir: str, deterministic: bool):
    """Trains ``preset.rerun_config`` for one epoch in a fresh process with
    ``runtime.deterministic_gpu_ops=deterministic``, then ``experiments.reproduce`` re-runs
    it in another and compares parameters, optimizer state and every metric bit for bit."""
    from vae_jax.run import files

    with tempfile.TemporaryDirectory(prefix="vae_jax_rerun_") as scratch:
        workdir = Path(scratch) / "run"
        started = time.perf_counter()
        train = _entry_point(
            "experiments.train",
            [
                f"--config={preset.rerun_config}",
                f"--workdir={workdir}",
                "--config.training.num_epochs=1",
                f"--config.runtime.deterministic_gpu_ops={str(deterministic).lower()}",
                f"--config.data.data_dir={data_dir}",
            ],
            preset.rerun_timeout_seconds,
        )
        train_seconds = time.perf_counter() - started
        if train.returncode != 0:
            raise RuntimeError(
                f"experiments.train exited {train.returncode}: {_last_line(train.stderr)}"
            )
        recorded = json.loads((workdir / files.MANIFEST_FILE).read_text())
        started = time.perf_counter()
        reproduce = _entry_point(
            "experiments.reproduce", [f"--workdir={workdir}"], preset.rerun_timeout_seconds
        )
        reproduce_seconds = time.perf_counter() - started
    says = _last_line(reproduce.stdout)
    if reproduce.returncode not in (0, 1) or not says.startswith(("reproduced", "not reproduced")):
        raise RuntimeError(
            f"experiments.reproduce exited {reproduce.returncode}: {_last_line(reproduce.stderr)}"
        )
    return {
        "deterministic_gpu_ops": deterministic,
        "xla_flags_recorded": recorded["environment"]["xla_flags"],
        "bit_identical": reproduce.returncode == 0 and says.startswith("reproduced"),
        "reproduce_says": says,
        "environment_warnings": [
            line for line in reproduce.stdout.splitlines() if line.startswith("warning:")
        ],
        "train_seconds": train_seconds,
        "reproduce_seconds": reproduce_seconds,
    }


def accelerator_training(preset: AcceleratorPreset, rates: dict) -> dict:
    runs = {}
    for batch_size, dtype in itertools.product(preset.batch_sizes, ("float32", "bfloat16")):
        config = fashion_mlp.get_config()
        config.training.batch_size, config.model.compute_dtype = batch_size, dtype
        runs[f"batch_{batch_size}_{dtype}"] = bench_epoch_throughput(
            config, preset.num_train, rates[dtype], preset.repeats
        )
    speedups = {
        f"batch_{b}": runs[f"batch_{b}_bfloat16"]["examples_per_second"]
        / runs[f"batch_{b}_float32"]["examples_per_second"]
        for b in preset.batch_sizes
    }
    return {"runs": runs, "bfloat16_over_float32": speedups}


def accelerator_evaluation(preset: AcceleratorPreset, rates: dict) -> dict:
    runs, speedups = {}, {}
    for batch_size, chunk in preset.bound_settings:
        setting = f"batch_{batch_size}_chunk_{chunk}"
        for dtype in ("float32", "bfloat16"):
            config = fashion_mlp.get_config()
            config.evaluation.batch_size = batch_size
            config.evaluation.importance_chunk_size = chunk
            config.evaluation.compute_dtype = dtype
            runs[f"{setting}_{dtype}"] = bench_evaluation(
                config, rates[dtype], preset.repeats, k=NUM_IMPORTANCE_SAMPLES
            )
        speedups[setting] = (
            runs[f"{setting}_bfloat16"]["examples_per_second"]
            / runs[f"{setting}_float32"]["examples_per_second"]
        )
    return {"runs": runs, "bfloat16_over_float32": speedups}


def deterministic_rerun(preset: AcceleratorPreset, data_dir: str, reruns: dict, save) -> dict:
    """The rerun with the flag, then (gpu preset) without it, each put in ``reruns`` and
    saved (``save()``) as soon as it is known: a check stopped during the second keeps the
    first."""
    for deterministic in (True, False) if preset.rerun_without_flag else (True,):
        name = "with_flag" if deterministic else "without_flag"
        reruns[name] = rerun_compared_bit_for_bit(preset, data_dir, deterministic)
        save()
    return reruns


def _speedup_lines(r: dict) -> list[str]:
    return [f"  bfloat16/float32 {k}: {v:.2f}" for k, v in r["bfloat16_over_float32"].items()]


def accelerator_section_lines(name: str, r: dict) -> list[str]:
    """What a person reads first of one accelerator section's result ``r``."""
    if name == "accelerator_training":
        lines = [
            f"training {key}: {run['examples_per_second']:.0f} examples/s, "
            f"{run['fraction_of_matmul']:.3f} of the {run['compute_dtype']} product"
            for key, run in r["runs"].items()
        ]
        return lines + _speedup_lines(r)
    if name == "accelerator_evaluation":
        lines = [
            f"K={run['num_importance_samples']} bound {key}: {run['examples_per_second']:.1f} "
            f"examples/s ({run['seconds_for_10000_test_examples']:.1f} s for 10000), "
            f"{run['fraction_of_matmul']:.3f} of the {run['compute_dtype']} product"
            for key, run in r["runs"].items()
        ]
        return lines + _speedup_lines(r)
    if name == "epoch_vs_loop":
        return [
            f"compiled epoch against a Python loop of jitted steps (batch {r['batch_size']}, "
            f"{r['steps']} steps): loop/scan {r['loop_over_compiled_epoch']:.2f}, "
            f"{r['loop_overhead_per_step_ms']:.3f} ms more per step; fractions "
            f"{r['compiled_epoch']['fraction_of_matmul']:.3f} (scan), "
            f"{r['python_loop']['fraction_of_matmul']:.3f} (loop); parameters "
            + ("bit-identical" if r["parameters_bit_identical"]
               else f"max relative difference {r['parameters_max_relative_difference']:.2g}")
        ]  # fmt: skip
    if name == "seed_sweep":
        return [
            f"{r['num_seeds']}-seed sweep, {strategy}: {s['over_single_seed_epochs']:.3f} of "
            f"{r['num_seeds']} single-seed epochs, {s['fraction_of_matmul']:.3f} of the "
            "float32 product; seed 0 "
            + ("bit-identical to its single run" if s["seed_0_bit_identical_to_single"]
               else f"within {s['seed_0_max_relative_difference']:.2g} of its single run")
            for strategy, s in r["strategies"].items()
        ]  # fmt: skip
    if name == "deterministic_rerun":
        return [
            f"rerun {key.replace('_', ' ')} (deterministic_gpu_ops="
            f"{str(run['deterministic_gpu_ops']).lower()}): "
            + ("bit-identical" if run["bit_identical"] else "DIFFERS")
            + f" ({run['reproduce_says']})"
            for key, run in r.items()
        ]
    return []


def accelerator_summary(results: dict) -> str:
    """A short text of the accelerator sections: machine, versions, date, then each
    section's lines and the errors of those that failed."""
    environment, run = results["environment"], results["accelerator"]
    packages = environment["packages"]
    reference = results["sections"]["accelerator_reference"]
    lines = [
        f"accelerator check, preset {run['preset']}, started {run['started']}",
        f"machine: {environment['backend']} {environment['device_kind']} "
        f"({len(environment['devices'])} device(s)), {environment['platform']}",
        f"versions: python {environment['python']}, "
        + ", ".join(f"{name} {packages[name]}" for name in ("jax", "jaxlib", "flax", "optax")),
        f"reference {reference['size']}^3 product: float32 ({reference['matmul_precision']}) "
        f"{reference['gflops']['float32']:.0f} GFLOP/s, bfloat16 operands "
        f"{reference['gflops']['bfloat16']:.0f} GFLOP/s",
    ]
    for name in ACCELERATOR_SECTIONS:
        if name in results["sections"]:
            lines += accelerator_section_lines(name, results["sections"][name])
    lines += [f"FAILED {name}: {error}" for name, error in run["errors"].items()]
    return "\n".join(lines) + "\n"


def _write_atomically(path: str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def save_accelerator_results(results: dict) -> None:
    """Writes the JSON (--json) and the summary (--summary) as they stand."""
    if _JSON.value:
        _write_atomically(_JSON.value, json.dumps(results, indent=2) + "\n")
    if _SUMMARY.value:
        _write_atomically(_SUMMARY.value, accelerator_summary(results))


def run_accelerator_sections(sections: list[str], results: dict) -> list[str]:
    """Runs the requested accelerator sections into ``results``, after the reference
    product at the preset's size. A section that fails is recorded with its error and the
    others still run (a lease is short); the JSON and the summary are rewritten after each
    section, so what is done survives a kill. Returns the names of the failed sections."""
    preset = ACCELERATOR_PRESETS[_PRESET.value]
    runtime.apply_runtime_config(fashion_mlp.get_config())  # the matmul precision runs use
    results["accelerator"] = {
        "preset": _PRESET.value,
        "sizes": preset._asdict(),
        "started": manifest.now(),
        "errors": {},
    }
    results["environment"] = manifest.environment()  # with the matmul precision just set
    rates = matmul_rates_at(preset.matmul_size, preset.repeats)
    results["sections"]["accelerator_reference"] = {
        "size": preset.matmul_size,
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "gflops": rates,
        "bfloat16_over_float32": rates["bfloat16"] / rates["float32"],
    }
    measure = {
        "accelerator_training": lambda: accelerator_training(preset, rates),
        "accelerator_evaluation": lambda: accelerator_evaluation(preset, rates),
        "epoch_vs_loop": lambda: bench_epoch_against_loop(
            fashion_mlp.get_config(), preset.num_train, rates["float32"], preset.repeats
        ),
        "seed_sweep": lambda: bench_seed_sweep_epochs(
            fashion_mlp.get_config(),
            preset.num_train,
            preset.num_seeds,
            rates["float32"],
            preset.repeats,
        ),
        "deterministic_rerun": lambda: deterministic_rerun(
            preset,
            _DATA_DIR.value,
            results["sections"].setdefault("deterministic_rerun", {}),
            lambda: save_accelerator_results(results),
        ),
    }
    print(accelerator_summary(results), end="", flush=True)
    for name in ACCELERATOR_SECTIONS:
        if name not in sections:
            continue
        started = time.perf_counter()
        try:
            results["sections"][name] = measure[name]()
        except Exception as error:  # recorded, so one failure costs only its own numbers
            traceback.print_exc()
            results["accelerator"]["errors"][name] = f"{type(error).__name__}: {error}"
            print(f"FAILED {name}: {results['accelerator']['errors'][name]}", flush=True)
        else:
            for line in accelerator_section_lines(name, results["sections"][name]):
                print(line, flush=True)
        results["accelerator"].setdefault("seconds", {})[name] = time.perf_counter() - started
        save_accelerator_results(results)
    return list(results["accelerator"]["errors"])


def check_accelerator_inputs(sections: list[str]) -> None:
    """Refuses, before any measurement, a deterministic_rerun without prepared data."""
    if "deterministic_rerun" not in sections:
        return
    from vae_jax.data import catalog

    if catalog.prepared_spec(_DATA_DIR.value or None, "fashion_mnist") is None:
        where = catalog.local_dataset_dir(_DATA_DIR.value or None, "fashion_mnist")
        raise app.UsageError(
            f"--sections=deterministic_rerun: fashion_mnist is not prepared in {where} "
            f"(--data_dir={_DATA_DIR.value!r}); run scripts/prepare_data.py "
            "--dataset=fashion_mnist --data_dir=DIR first"
        )


if __name__ == "__main__":
    app.run(main)
