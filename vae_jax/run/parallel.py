"""Devices, meshes and processes: one code path for 1 or N devices on 1 or N hosts.

Training is data parallel: the parameters and the (small) training set are replicated, and
each gathered batch is split along a ``data`` mesh axis; XLA inserts the gradient
all-reduce. Seed sweeps can instead split a ``seeds`` axis over devices. Multi-host runs
use JAX's own distributed runtime; every process runs the same program and only process 0
writes files.
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vae_jax.errors import ConfigError

DATA_AXIS = "data"
SEED_AXIS = "seeds"


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int):
    """Joins a multi-process run (``jax.distributed.initialize``); no-op for one process.

    On CPU the cross-process collectives go through gloo.
    """
    if num_processes <= 1:
        return
    if not coordinator_address:
        raise ConfigError("--num_processes > 1 needs --coordinator_address=HOST:PORT")
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process_id={process_id} must be in [0, {num_processes})")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
    )
    logging.info(
        "process %d of %d; %d local and %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


def is_primary() -> bool:
    """Whether this process writes files (process 0)."""
    return jax.process_index() == 0


def make_mesh(num_devices: int = 0, axis: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` global devices (0 = all of them)."""
    devices = jax.devices()
    if num_devices > len(devices):
        raise ConfigError(
            f"runtime.num_devices={num_devices} but only {len(devices)} devices are available"
        )
    count = num_devices or len(devices)
    return Mesh(np.asarray(devices[:count]), (axis,))


def check_divisible(batch_size: int, mesh: Mesh, field: str = "training.batch_size") -> None:
    devices = mesh.devices.size
    if batch_size % devices:
        raise ConfigError(
            f"{field}={batch_size} is not divisible by the {devices} devices of the mesh; "
            f"use a multiple of {devices} or set runtime.num_devices"
        )


def sharded_along(mesh: Mesh, axis: str) -> NamedSharding:
    """Leading dimension split over the mesh axis ``axis``, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(axis))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def put(array, sharding: NamedSharding) -> jax.Array:
    """A global array with ``sharding`` from data every process holds in full."""
    host = np.asarray(array)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_tree(tree, sharding: NamedSharding):
    return jax.tree.map(lambda a: put(a, sharding), tree)
