"""``vae_jax/sweep/group.py``: a single run is a group of one. With ``SINGLE`` its state has
no run axis and its report is the one it writes; the same member as a one-seed ``map``
program carries a run axis of one and ends with the same bits."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from vae_jax import adapter
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.run import files
from vae_jax.sweep import group, strategies


@pytest.mark.slow
def test_a_single_run_is_a_group_of_one(tiny_config, tmp_path):
    tiny_config.training.num_epochs = 1
    dataset = load_dataset(tiny_config)
    alone = group.train_group(
        tiny_config,
        dataset,
        [group.Member(tiny_config, tmp_path / "alone", "")],
        strategies.SINGLE,
        isolate_failures=False,
    )
    assert (alone.status, alone.epochs_completed, alone.failed) == ("complete", 1, {})
    (report,) = alone.reports
    assert report == files.read_json(tmp_path / "alone" / files.REPORT_FILE)
    vae = adapter.vae_from_config(tiny_config, dataset.image_shape)
    shapes = jax.eval_shape(vae.init, jax.random.key(0))
    assert jax.tree.map(np.shape, alone.states.params) == jax.tree.map(np.shape, shapes)

    mapped = group.train_group(
        tiny_config, dataset, [group.Member(tiny_config, tmp_path / "map", "seed 0")], "map"
    )
    one = strategies.take(mapped.states, 0)
    for x, y in zip(jax.tree.leaves(alone.states), jax.tree.leaves(one), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_only_a_single_run_splits_its_batches_over_devices(tiny_config, tmp_path):
    """A mesh of several devices with a run axis is refused before anything is written."""

    class TwoDevices:  # what train_group reads of a mesh before it refuses
        devices = np.zeros(2)

    with pytest.raises(ConfigError, match="strategy=map"):
        group.train_group(
            tiny_config, None, [group.Member(tiny_config, tmp_path / "run", "")], "map",
            mesh=TwoDevices(),
        )  # fmt: skip
    assert not (tmp_path / "run").exists()
