"""``load_run(workdir, step=None) -> (vae, params, config)`` for scripts and notebooks.

Works on finished and interrupted runs, without the dataset: the image shape is taken
from the run's manifest and the parameters from its newest valid checkpoint (or the one
of ``step``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import ml_collections

from vae_jax import adapter, model
from vae_jax.errors import CheckpointError
from vae_jax.run import checkpointing, files
from vae_jax.train_state import TrainState


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / files.CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{path} not found: --workdir={workdir} holds no run")
    if not files.run_started(workdir):
        raise CheckpointError(
            f"--workdir={workdir} holds a start that was cut short (no {files.MANIFEST_FILE}); "
            "train again with the same command"
        )
    return ml_collections.ConfigDict(files.read_config(workdir))


def image_shape_of_run(workdir: str | Path) -> tuple[int, int, int]:
    record = files.read_json(Path(workdir) / files.MANIFEST_FILE)
    return tuple(record["data"]["image_shape"])


def abstract_train_state(vae: model.VAE, config) -> TrainState:
    """Shapes and dtypes of the run's train state, placed on this process's first device:
    the restore target. Giving the placement lets a run trained on several devices, hosts
    or in a sharded sweep be loaded anywhere (orbax otherwise expects the saving topology)."""
    optimizer, _ = adapter.optimizer_from_config(config, total_steps=1)
    shapes = jax.eval_shape(
        lambda key: TrainState(
            jax.numpy.zeros((), jax.numpy.int32), vae.init(key), optimizer.init(vae.init(key))
        ),
        jax.random.key(0),
    )
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)


def checkpoint_folder(workdir: Path, config, step: int | None) -> Path:
    """Where the checkpoint to load is: early stopping's best one by default when the run
    used it (``best_checkpoint/``), else (or for a ``step`` found there) ``checkpoints/``."""
    best = workdir / files.BEST_CHECKPOINT_DIR
    if not config.training.get("early_stopping_patience", 0) or not best.is_dir():
        return workdir / files.CHECKPOINT_DIR
    if step is None:
        return best
    regular = workdir / files.CHECKPOINT_DIR
    if (regular / str(step)).is_dir() or not (best / str(step)).is_dir():
        return regular
    return best


def load_state(workdir: str | Path, step: int | None = None):
    """``(vae, state, record, config)`` of checkpoint ``step`` (default: newest valid, or
    the best validation epoch's of a run trained with early stopping)."""
    workdir = Path(workdir)
    config = load_config(workdir)
    vae = adapter.vae_from_config(config, image_shape_of_run(workdir))
    target = abstract_train_state(vae, config)
    folder = checkpoint_folder(workdir, config, step)
    checkpointer = checkpointing.Checkpointer(folder, 1, read_only=True)
    try:
        if step is None:
            restored = checkpointer.restore_latest(target)
            if restored is None:
                raise CheckpointError(f"no checkpoint in {folder}")
            _, state, record = restored
        else:
            if step not in checkpointer.steps():
                raise CheckpointError(
                    f"no checkpoint at step {step} in {folder}; it has {checkpointer.steps()}"
                )
            state, record = checkpointer.restore(step, target)
    finally:
        checkpointer.close()
    return vae, state, record, config


def load_run(workdir: str | Path, step: int | None = None):
    """``(vae, params, config)`` of a run; ``step`` names a checkpoint (its global step)."""
    vae, state, _, config = load_state(workdir, step)
    return vae, state.params, config
