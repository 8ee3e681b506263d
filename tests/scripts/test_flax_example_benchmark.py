"""The flax_example section of scripts/benchmark.py (issue 32): the Flax VAE example's loop
as the benchmark writes it, and the section end to end at tiny sizes (no timing checked)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.repo import REPO, subprocess_env

MODELS = {"example_model": "784-500-20", "default_model": "784-512-256-20"}
STEP_PARTS = {
    "products_at_matmul_rate", "forward_backward", "optimizer_update",
    "binarization_random_bits", "metrics", "whole_train_step", "in_compiled_epoch",
    "flax_example_step",
}  # fmt: skip


@pytest.fixture(scope="module")
def flax_example():
    """scripts/flax_example_benchmark.py as a module (scripts/ is no package)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        yield importlib.import_module("flax_example_benchmark")
    finally:
        sys.path.remove(str(REPO / "scripts"))


@pytest.mark.slow
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_the_example_loop_trains_its_model_one_jitted_step_per_batch(flax_example, compute_dtype):
    images = np.random.default_rng(0).integers(0, 256, (10, 784), dtype=np.uint8)
    run, examples = flax_example.example_epoch(
        images, hidden_sizes=(500,), latents=20, compute_dtype=compute_dtype,
        batch_size=4, learning_rate=1e-3,
    )  # fmt: skip
    assert examples == 8  # two batches of 4: the last partial batch is dropped
    first = jax.tree.map(np.asarray, run())
    second = run()  # continues from the first epoch
    assert (int(first.step), int(second.step)) == (2, 4)
    shapes = jax.tree.map(lambda p: p.shape, second.params)
    assert shapes == {
        "encoder": {
            "fc1": {"kernel": (784, 500), "bias": (500,)},
            "fc_mean": {"kernel": (500, 20), "bias": (20,)},
            "fc_logvar": {"kernel": (500, 20), "bias": (20,)},
        },
        "decoder": {
            "fc1": {"kernel": (20, 500), "bias": (500,)},
            "fc_out": {"kernel": (500, 784), "bias": (784,)},
        },
    }
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(second.params))
    moved = jax.tree.map(lambda a, b: np.abs(a - np.asarray(b)).max(), first.params, second.params)
    assert all(m > 0 for m in jax.tree.leaves(moved))


def test_bfloat16_runs_every_dense_product_of_the_example_on_bfloat16_operands(flax_example):
    model = flax_example.VAE((500,), 20, jnp.dtype("bfloat16"))
    x, key = jnp.ones((4, 784)), jax.random.key(0)
    params = jax.eval_shape(model.init, key, x, key)["params"]
    jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, x, key))(params).jaxpr
    operands = [
        tuple(v.aval.dtype for v in e.invars)
        for e in jaxpr.eqns
        if e.primitive.name == "dot_general"
    ]
    assert len(operands) == 5
    assert set(operands) == {(jnp.dtype(jnp.bfloat16),) * 2}


@pytest.mark.slow
def test_the_section_runs_at_tiny_sizes_and_reports_both_models_and_dtypes(tmp_path):
    out = tmp_path / "flax_example.json"
    result = subprocess.run(
        [sys.executable, "scripts/benchmark.py", "--sections=flax_example", "--repeats=1",
         "--flax_example_num_train=256", "--matmul_size=128", f"--json={out}"],
        cwd=REPO, env=subprocess_env(JAX_PLATFORMS="cpu"), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["targets"]["over_flax_example_float32"] == 1.1
    assert results["targets"]["over_flax_example_bfloat16"] == 1.4
    runs = results["sections"]["flax_example"]
    assert set(runs) == {f"{m}_{d}" for m in MODELS for d in ("float32", "bfloat16")}
    for name, r in runs.items():
        model, dtype = name.rsplit("_", 1)
        assert (r["model"], r["compute_dtype"], r["batch_size"]) == (MODELS[model], dtype, 128)
        assert r["ours"]["examples_per_epoch"] == r["flax_example"]["examples_per_epoch"] == 256
        assert len(r["ours"]["seconds"]) == len(r["flax_example"]["seconds"]) == 1
        assert r["ours_over_flax_example"] == pytest.approx(
            r["ours"]["examples_per_second"] / r["flax_example"]["examples_per_second"]
        )
        assert set(r["our_step_ms"]) == STEP_PARTS
        assert all(np.isfinite(v) for v in r["our_step_ms"].values())
    assert result.stdout.count("against the Flax example (") == 4
