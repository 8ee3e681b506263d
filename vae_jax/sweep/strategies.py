"""How one compiled program trains many seeds: a seed axis handled by ``vmap``,
``lax.map`` or sharded over devices, and ``auto``, a fixed rule by backend.

* ``map``: the seeds one after another inside one program (``lax.map``). Each seed runs
  the single-run epoch unchanged, so its arithmetic, and its parameters, are those of a
  single run with that seed.
* ``vmap``: all seeds in lock step, every matrix product batched over seeds. Fast on
  accelerators; XLA may sum in a different order than for one seed, so results agree
  with single runs to a measured tolerance, not bit for bit.
* ``shard``: the seed axis split over devices (``vmap`` within a device). With one seed
  per device each device runs the single-run arithmetic.
* ``auto``: on accelerators ``shard`` when the seeds divide over several devices, else
  ``vmap``; on CPU ``map`` (measured faster there, and bit-identical to single runs). The
  rule depends only on the backend and the device count, so a resumed sweep on the same
  machine runs the same arithmetic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax import parallel
from vae_jax.errors import ConfigError

STRATEGIES = ("auto", "map", "vmap", "shard")


def stack(trees: list):
    """One pytree with a leading seed axis from a list of pytrees."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def take(tree, index: int):
    """The pytree of one seed from a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def multi_seed_epoch(train_epoch, strategy: str):
    """``epoch(states, streams, images, epoch)`` over a leading seed axis of states and
    streams; ``images`` and ``epoch`` are shared."""
    if strategy == "map":

        def mapped(states, streams, images, epoch):
            return jax.lax.map(lambda s: train_epoch(s[0], s[1], images, epoch), (states, streams))

        return mapped
    if strategy in ("vmap", "shard"):
        return jax.vmap(train_epoch, in_axes=(0, 0, None, None))
    raise ConfigError(f"--strategy={strategy!r} is not one of {list(STRATEGIES)}")


def place(states, streams, strategy: str, num_seeds: int):
    """Puts the stacked states and streams where the strategy runs them."""
    if strategy != "shard":
        return states, streams
    mesh = parallel.make_mesh(0, parallel.SEED_AXIS)
    if num_seeds % mesh.devices.size:
        raise ConfigError(
            f"--strategy=shard: {num_seeds} seeds do not divide over {mesh.devices.size} devices"
        )
    sharding = parallel.sharded_along(mesh, parallel.SEED_AXIS)
    return jax.device_put(states, sharding), jax.device_put(streams, sharding)


def resolve(strategy: str, *, backend: str, device_count: int, num_seeds: int) -> tuple[str, str]:
    """The strategy to run (``auto`` resolved by the rule in the module docstring) and why."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy={strategy!r} is not one of {list(STRATEGIES)}")
    if strategy != "auto":
        return strategy, "requested"
    if backend == "cpu":
        return "map", "auto on cpu: the seeds one after another, each a single run's arithmetic"
    if device_count > 1 and num_seeds % device_count == 0:
        return "shard", f"auto on {backend} with {device_count} devices"
    return "vmap", f"auto on {backend}: seeds in lock step"
