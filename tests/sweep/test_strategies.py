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


def test_a_single_run_is_a_group_of_one_without_a_run_axis():
    """``SINGLE`` (not a ``--strategy``): the run's own trees, its own view and the
    single-run epoch itself, so a single run compiles exactly the program it did alone; the
    other strategies keep a leading run axis."""
    import jax.numpy as jnp
    import numpy as np

    tree = {"w": jnp.arange(3.0)}

    def epoch(state, streams, images, epoch, traced):
        return state, {}

    assert strategies.SINGLE not in strategies.STRATEGIES
    assert strategies.stack_runs([tree], strategies.SINGLE) is tree
    assert strategies.run_view(strategies.SINGLE)(tree, 0) is tree
    assert strategies.multi_run_epoch(epoch, strategies.SINGLE) is epoch
    assert strategies.place((tree,), strategies.SINGLE, 1) == (tree,)
    with pytest.raises(ValueError, match="unpack"):
        strategies.stack_runs([tree, tree], strategies.SINGLE)  # one run only
    stacked = strategies.stack_runs([tree, {"w": jnp.arange(3.0) + 1}], "map")
    assert stacked["w"].shape == (2, 3)
    np.testing.assert_array_equal(strategies.run_view("map")(stacked, 1)["w"], [1.0, 2.0, 3.0])
