"""``vae_jax/run/checkpointing.py``: each save records a sha256 of every leaf of the train
state (parameters and optimizer moments), and damaged bytes fail that checksum."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import tiny
from vae_jax import adapter, model
from vae_jax.errors import CheckpointError
from vae_jax.run import checkpointing
from vae_jax.train_state import create_train_state


def test_corrupted_bytes_are_caught_by_the_checksum(tmp_path):
    state = {"w": jnp.arange(4.0)}
    checkpointer = checkpointing.Checkpointer(tmp_path / "ckpt", 3)
    checkpointer.save(1, state, {"epoch": 1})
    record = tmp_path / "ckpt" / "1" / "record" / "metadata"
    saved = json.loads(record.read_text())
    saved["state_sha256"] = "0" * 64
    record.write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="is corrupted"):
        checkpointer.restore(1, state)
    checkpointer.close()


def _small_train_state():
    """The train state of a small VAE under the tiny config's optimizer after one update,
    so that Adam's moments and counts are not their zero initial values."""
    vae = model.make_vae(image_shape=(4, 4, 1), latent_dim=2, hidden_sizes=(8,))
    optimizer, _ = adapter.optimizer_from_config(tiny.get_config(), total_steps=10)

    @jax.jit
    def one_update(key):
        state = create_train_state(vae, optimizer, key)
        grads = jax.tree.map(lambda p: p + 0.1, state.params)  # any gradient, none zero
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(step=state.step + 1, params=params, opt_state=opt_state)

    return jax.tree.map(np.asarray, one_update(jax.random.key(0)))


def _with_one_element_moved(state, index: int):
    """``state`` with the last element of its ``index``-th leaf moved by the smallest step
    of its dtype (one ulp, or 1 for an integer)."""
    leaves, tree = jax.tree.flatten(state)
    moved = np.array(leaves[index])
    flat = moved.reshape(-1)
    if np.issubdtype(moved.dtype, np.integer):
        flat[-1] += 1
    else:
        flat[-1] = np.nextafter(flat[-1], np.inf)
    return jax.tree.unflatten(
        tree, [moved if i == index else leaf for i, leaf in enumerate(leaves)]
    )


@pytest.mark.slow
def test_the_state_checksum_covers_every_leaf_of_the_train_state():
    """Catches a checkpoint checksum that covers only part of the state (e.g. the parameters
    and not the optimizer's moments or the step): one element of any single leaf of a real
    train state (step, parameters, Adam's mu, nu and counts) moved by one ulp must change
    ``state_checksum``, and an equal copy must not."""
    state = _small_train_state()
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    for part in (
        ".step",
        ".params[",
        ".opt_state[0].mu[",
        ".opt_state[0].nu[",
        ".opt_state[0].count",
    ):
        assert any(path.startswith(part) for path in paths), part  # every kind is checked
    reference = checkpointing.state_checksum(state)
    assert checkpointing.state_checksum(jax.tree.map(np.copy, state)) == reference
    unnoticed = [
        path
        for index, path in enumerate(paths)
        if checkpointing.state_checksum(_with_one_element_moved(state, index)) == reference
    ]
    assert not unnoticed, f"state_checksum does not see a change in {unnoticed}"


@pytest.mark.parametrize("moment", ["mu", "nu"])
def test_a_checkpoint_whose_optimizer_moment_changed_on_disk_fails_its_checksum(tmp_path, moment):
    """Catches a checkpoint checksum that leaves out the optimizer state: a saved checkpoint
    whose Adam moment (one element of ``mu`` or ``nu``, one ulp) changed on disk after the
    save (its state files replaced by those of the changed state, its record kept) is
    refused on restore with ``CheckpointError``, and the newest-first restore falls back to
    the checkpoint before it."""
    state = _small_train_state()
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    index = paths.index(f".opt_state[0].{moment}['encoder']['mlp']['dense_0']['kernel']")
    changed = _with_one_element_moved(state, index)
    checkpointer = checkpointing.Checkpointer(tmp_path / "ckpt", 3)
    checkpointer.save(1, state, {"epoch": 1})
    checkpointer.save(2, state, {"epoch": 2})
    other = checkpointing.Checkpointer(tmp_path / "other", 3)
    other.save(2, changed, {"epoch": 2})
    other.close()
    shutil.rmtree(tmp_path / "ckpt" / "2" / "state")
    shutil.copytree(tmp_path / "other" / "2" / "state", tmp_path / "ckpt" / "2" / "state")
    with pytest.raises(CheckpointError, match=r"checkpoint .*/2 is corrupted"):
        checkpointer.restore(2, state)
    restored_step, restored, record = checkpointer.restore_latest(state)
    assert (restored_step, record["epoch"]) == (1, 1)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(a, b)
    checkpointer.close()
