"""How one compiled program trains many seeds: a seed axis handled by ``vmap``,
``lax.map`` or sharded over devices, and ``auto``, which picks by backend and measurement.

* ``map``: the seeds one after another inside one program (``lax.map``). Each seed runs
  the single-run epoch unchanged, so its arithmetic, and its parameters, are those of a
  single run with that seed.
* ``vmap``: all seeds in lock step, every matrix product batched over seeds. Fast on
  accelerators; XLA may sum in a different order than for one seed, so results agree
  with single runs to a measured tolerance, not bit for bit.
* ``shard``: the seed axis split over devices (``vmap`` within a device). With one seed
  per device each device runs the single-run arithmetic.
* ``auto``: ``vmap`` (or ``shard`` with several devices) on accelerators; on CPU, times a
  short probe of ``map`` and ``vmap`` and keeps the faster.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
from absl import logging

from vae_jax import parallel
from vae_jax.errors import ConfigError

STRATEGIES = ("auto", "map", "vmap", "shard")
PROBE_STEPS = 20


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


def seconds_per_step(epoch_fn, states, streams, images, steps: int) -> float:
    """Time of one (already compiled) probe epoch of ``steps`` steps, per step."""
    jax.block_until_ready(epoch_fn(states, streams, images, jnp.int32(0)))
    started = time.perf_counter()
    jax.block_until_ready(epoch_fn(states, streams, images, jnp.int32(1)))
    return (time.perf_counter() - started) / steps


def choose(strategy: str, make_probe_epoch, states, streams, images) -> tuple[str, dict]:
    """The strategy to use and the measurements behind the choice.

    ``make_probe_epoch(strategy)`` returns a multi-seed epoch of ``PROBE_STEPS`` steps.
    """
    if strategy != "auto":
        return strategy, {}
    backend = jax.default_backend()
    num_seeds = jax.tree.leaves(states)[0].shape[0]
    if backend != "cpu":
        if jax.device_count() > 1 and num_seeds % jax.device_count() == 0:
            return "shard", {"reason": f"{backend} with {jax.device_count()} devices"}
        return "vmap", {"reason": f"{backend}: seeds in lock step"}
    measured = {}
    for candidate in ("map", "vmap"):
        probe = jax.jit(make_probe_epoch(candidate))
        measured[candidate] = seconds_per_step(probe, states, streams, images, PROBE_STEPS)
    chosen = min(measured, key=measured.get)
    logging.info("sweep strategy: %s (seconds per step %s)", chosen, measured)
    return chosen, {
        "reason": f"cpu: the faster in a {PROBE_STEPS}-step probe",
        "seconds_per_step": measured,
    }
