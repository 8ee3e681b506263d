"""``vae_jax/run/runtime.py``: the GPU-determinism switch is set and recorded."""

from __future__ import annotations

import os

from vae_jax.run import manifest, runtime


def test_deterministic_gpu_ops_flag_is_set_and_recorded(tiny_config, monkeypatch, tmp_path):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    tiny_config.runtime.deterministic_gpu_ops = True
    runtime.apply_runtime_config(tiny_config)
    assert os.environ["XLA_FLAGS"].split() == [
        "--xla_cpu_enable_fast_math=false",
        "--xla_gpu_deterministic_ops=true",
    ]
    runtime.apply_runtime_config(tiny_config)  # idempotent
    assert os.environ["XLA_FLAGS"].count("deterministic") == 1
    record = manifest.make_manifest(tiny_config, {"fingerprint_sha256": {}})
    assert record["deterministic_gpu_ops_requested"] is True
    assert "--xla_gpu_deterministic_ops=true" in record["environment"]["xla_flags"]
