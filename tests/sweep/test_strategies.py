"""``vae_jax/sweep/strategies.py``: ``auto`` is a fixed rule of the backend, the device count
and the number of runs; an explicit strategy is used as asked."""

from __future__ import annotations

import pytest

from vae_jax.sweep import strategies


@pytest.mark.parametrize(
    ("backend", "device_count", "num_seeds", "expected"),
    [
        ("cpu", 1, 8, "map"),
        ("cpu", 8, 8, "map"),  # fake CPU devices: still one seed after another
        ("gpu", 1, 8, "vmap"),
        ("gpu", 4, 8, "shard"),
        ("tpu", 4, 6, "vmap"),  # 6 seeds do not divide over 4 devices
    ],
)
def test_auto_strategy_is_a_fixed_rule_of_the_backend(backend, device_count, num_seeds, expected):
    chosen, reason = strategies.resolve(
        "auto", backend=backend, device_count=device_count, num_runs=num_seeds
    )
    assert chosen == expected
    assert reason.startswith(f"auto on {backend}")
    # An explicit strategy is used as asked.
    assert strategies.resolve("vmap", backend="cpu", device_count=1, num_runs=2)[0] == "vmap"
