"""How one compiled program trains many runs (seeds, or a grid's cells): a run axis
handled by ``vmap``, ``lax.map`` or sharded over devices, and ``auto``, a fixed rule by
backend.

* ``map``: the seeds one after another inside one program (``lax.map``). Each seed runs
  the single-run epoch unchanged, so its arithmetic, and its parameters, are those of a
  single run with that seed.
* ``vmap``: all seeds in lock step, every matrix product batched over seeds. Fast on
  accelerators; XLA may sum in a different order than for one seed, so results agree
  with single runs to a measured tolerance, not bit for bit.
* ``shard``: the seed axis split over devices (``vmap`` within a device). With one seed
  per device each device runs the single-run arithmetic.
* ``auto``: on accelerators ``shard`` when the runs divide over several devices, else
  ``vmap``; on CPU ``map`` (measured faster there, and bit-identical to single runs). The
  rule depends only on the backend and the device count, so a resumed sweep on the same
  machine runs the same arithmetic.

A single run is a group of one with ``SINGLE``, not a ``--strategy``: no run axis at all
(``stack_runs``, ``run_view`` and ``multi_run_epoch`` are the identity), so its program is
the single-run epoch itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vae_jax.errors import ConfigError
from vae_jax.run import parallel
from vae_jax.training.fit import single_run_view

STRATEGIES = ("auto", "map", "vmap", "shard")  # what --strategy may name
SINGLE = "single"  # one run alone, without a run axis: ``train_and_evaluate``


def stack(trees: list):
    """One pytree with a leading seed axis from a list of pytrees."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def take(tree, index: int):
    """The pytree of one seed from a stacked pytree."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def stack_runs(trees: list, strategy: str):
    """The runs' pytrees as the strategy's program takes them: stacked over a leading run
    axis, or (``SINGLE``) the one run's own tree."""
    if strategy == SINGLE:
        (tree,) = trees
        return tree
    return stack(trees)


def run_view(strategy: str):
    """``run_view(tree, i)`` of ``fit``: run ``i``'s part of a tree of the program."""
    return single_run_view if strategy == SINGLE else take


def multi_run_epoch(train_epoch, strategy: str):
    """``sweep_epoch(states, streams, images, epoch, traced)`` over a leading run axis of
    states, streams and traced hyperparameters (seeds, or a grid's cells and seeds);
    ``images`` and ``epoch`` are shared; ``SINGLE``: ``train_epoch`` itself."""
    if strategy == SINGLE:
        return train_epoch
    if strategy == "map":

        def sweep_epoch(states, streams, images, epoch, traced):
            def one_run(run):
                state, run_streams, run_traced = run
                return train_epoch(state, run_streams, images, epoch, run_traced)

            return jax.lax.map(one_run, (states, streams, traced))

        return sweep_epoch
    if strategy in ("vmap", "shard"):
        batched = jax.vmap(train_epoch, in_axes=(0, 0, None, None, 0))

        def sweep_epoch(states, streams, images, epoch, traced):
            return batched(states, streams, images, epoch, traced)

        return sweep_epoch
    raise ConfigError(f"--strategy={strategy!r} is not one of {list(STRATEGIES)}")


def place(trees: tuple, strategy: str, num_runs: int) -> tuple:
    """Puts pytrees stacked over runs where the strategy runs them (``SINGLE``: where they
    are; a data-parallel single run places its own, replicated)."""
    if strategy != "shard":
        return trees
    mesh = parallel.make_mesh(0, parallel.SEED_AXIS)
    if num_runs % mesh.devices.size:
        raise ConfigError(
            f"--strategy=shard: {num_runs} runs do not divide over {mesh.devices.size} devices"
        )
    sharding = parallel.sharded_along(mesh, parallel.SEED_AXIS)
    return tuple(jax.device_put(tree, sharding) for tree in trees)


def resolve(strategy: str, *, backend: str, device_count: int, num_runs: int) -> tuple[str, str]:
    """The strategy to run (``auto`` resolved by the rule in the module docstring) and why."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy={strategy!r} is not one of {list(STRATEGIES)}")
    if strategy != "auto":
        return strategy, "requested"
    if backend == "cpu":
        return "map", "auto on cpu: the seeds one after another, each a single run's arithmetic"
    if device_count > 1 and num_runs % device_count == 0:
        return "shard", f"auto on {backend} with {device_count} devices"
    return "vmap", f"auto on {backend}: seeds in lock step"
