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
"""

import itertools
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from sweep_benchmark import NUM_TRAIN, synthetic_images  # scripts/, this file's directory

from experiments.configs import fashion_mlp
from vae_jax import adapter, hyperparameters, manifest, rng
from vae_jax.data import load_dataset
from vae_jax.data.preprocess import make_preprocessing
from vae_jax.evaluation import per_example, vae_ais
from vae_jax.evaluation.ais import HMCSettings
from vae_jax.rundir import loading
from vae_jax.train_state import create_train_state
from vae_jax.training import step as step_lib
from vae_jax.training.trainer import epoch_with_traced_hyperparameters, trainer_from_config

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

TARGETS = {
    "forward_backward_fraction": 0.85,
    "step_over_floor": 1.2,
    "evaluation_fraction": 0.9,
    "bfloat16_evaluation_speedup": 2.0,
    "bfloat16_bias_nats": 0.05,
    "evaluate_rest_fraction": 0.10,
    "grid_over_single_commands": 0.5,
}
AT_MOST = {
    "step_over_floor",
    "bfloat16_bias_nats",
    "evaluate_rest_fraction",
    "grid_over_single_commands",
}


def timed(fn, *args, repeats: int) -> float:
    """Median wall time of ``fn(*args)`` (after one warm-up call), results synchronized."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_gflops(dtype: str = "float32", size: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of a large matrix product with ``dtype`` operands, accumulated in float32:
    the reference every fraction of that precision divides by."""
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    product = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    return 2 * size**3 / timed(product, a, b, repeats=repeats) / 1e9


def matmul_rates(repeats: int) -> dict[str, float]:
    """Both references, each the median of ``repeats`` interleaved measurements."""
    rates = {dtype: [] for dtype in ("float32", "bfloat16")}
    for _ in range(repeats):
        for dtype in rates:
            rates[dtype].append(matmul_gflops(dtype, repeats=1))
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
    preprocessing = make_preprocessing(config.data, config.model.likelihood, already_binary=False)
    trainer = trainer_from_config(config, (28, 28, 1), preprocessing, NUM_TRAIN)
    images = synthetic_images(NUM_TRAIN)
    streams = rng.make_streams(0)
    state = create_train_state(trainer.vae, trainer.optimizer, streams.init)
    # The epoch a run compiles: its hyperparameters are inputs (vae_jax/hyperparameters.py).
    epoch_fn = epoch_with_traced_hyperparameters(config, (28, 28, 1), preprocessing, NUM_TRAIN)
    traced = hyperparameters.traced_values(config)
    compiled = jax.jit(epoch_fn).lower(state, streams, images, jnp.int32(0), traced).compile()
    seconds = timed(lambda: compiled(state, streams, images, jnp.int32(0), traced), repeats=repeats)
    examples_per_second = NUM_TRAIN / seconds
    flops = matmul_flops(config)
    achieved = flops["train_step"] * examples_per_second / 1e9
    batch_size = config.training.batch_size
    breakdown = step_breakdown(trainer, state, images, batch_size, repeats)
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


def _verdict(value: float, name: str) -> str:
    """``(target >= t: met)`` for the target ``TARGETS[name]``."""
    target, at_most = TARGETS[name], name in AT_MOST
    met = value <= target if at_most else value >= target
    return f"(target {'<=' if at_most else '>='} {target}: {'met' if met else 'NOT met'})"


def main(argv):
    del argv
    sections, repeats = _SECTIONS.value, _REPEATS.value
    if {"evaluation_bias", "evaluate_command"} & set(sections) and not _WORKDIR.value:
        raise app.UsageError("--sections=evaluation_bias/evaluate_command need --workdir")
    results = {"environment": manifest.environment(), "targets": TARGETS, "sections": {}}
    rates = matmul_rates(repeats)
    results["matmul_gflops"] = rates
    print(
        f"reference: 4096x4096 matrix product, float32 {rates['float32']:.1f} GFLOP/s, "
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
    if _JSON.value:
        Path(_JSON.value).parent.mkdir(parents=True, exist_ok=True)
        Path(_JSON.value).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {_JSON.value}")


if __name__ == "__main__":
    app.run(main)
