"""Orbax checkpoints that survive a kill: atomic saves, verified restores, fallback.

A checkpoint is numbered by the global step it was taken at and holds the train state and
a JSON record (epoch, step, seed and a sha256 of every state leaf). Orbax writes each
checkpoint into a temporary folder and renames it when complete, so a kill during a save
leaves the previous checkpoints untouched. ``restore_latest`` tries the newest checkpoint
first and, if it cannot be read or its contents do not match the recorded checksum,
reports that in one line and tries the one before.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from vae_jax.errors import CheckpointError
from vae_jax.run.files import DAMAGED_CHECKPOINT_DIR


def state_checksum(state) -> str:
    """sha256 over the paths, dtypes, shapes and bytes of every leaf of ``state``."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        array = np.asarray(leaf)
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _first_line(error: BaseException) -> str:
    reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
    return f"{type(error).__name__}: {reason}"


class Checkpointer:
    """Saves and restores the train state under ``<directory>/<step>``."""

    def __init__(self, directory: str | Path, keep: int | None, *, read_only: bool = False):
        self.directory = Path(directory).absolute()
        # read_only: never writes (not even orbax's root metadata); for loading runs.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            enable_async_checkpointing=False,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            save_root_metadata=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "record")
        )

    def steps(self) -> list[int]:
        """Global steps with a complete checkpoint, oldest first."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, record: dict) -> None:
        """Writes the checkpoint of ``step`` (atomically) and prunes old ones."""
        record = {**record, "state_sha256": state_checksum(state)}
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)
                ),
                force=True,
            )
            self._manager.wait_until_finished()
        except Exception as error:  # a full disk, a vanished directory, ...
            raise CheckpointError(
                f"could not save the checkpoint of step {step} in {self.directory} "
                f"({_first_line(error)}); the checkpoints before it are intact: free space or "
                "fix the directory, then run the same command to resume"
            ) from error

    def restore(self, step: int, target):
        """Restores ``(state, record)`` of ``step`` into the structure of ``target``;
        raises ``CheckpointError`` if it cannot be read or fails its checksum."""
        try:
            restored = self._manager.restore(
                int(step),
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), record=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:  # orbax/tensorstore raise many types for damaged files
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} cannot be restored ({_first_line(error)})"
            ) from error
        state, record = restored["state"], restored["record"]
        if record.get("state_sha256") != state_checksum(state):
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} is corrupted: its contents do not "
                "match the checksum recorded when it was saved"
            )
        return state, record

    def record(self, step: int) -> dict:
        """The JSON record of checkpoint ``step`` (epoch, step, seed), without its state."""
        try:
            restored = self._manager.restore(
                int(step), args=ocp.args.Composite(record=ocp.args.JsonRestore())
            )
        except Exception as error:  # orbax raises many types for damaged files
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} has no readable record ({error})"
            ) from error
        return dict(restored["record"])

    def restore_newest(self, target):
        """``(step, state, record, failed_steps)`` of the newest checkpoint that restores
        (``failed_steps``: the newer ones that did not), or None if there are no
        checkpoints. Raises ``CheckpointError`` if none restores. Only reads."""
        steps = self.steps()
        if not steps:
            return None
        failures = []
        for step in reversed(steps):
            try:
                state, record = self.restore(step, target)
            except CheckpointError as error:
                logging.warning("%s; trying the previous checkpoint", error)
                failures.append(step)
                continue
            return step, state, record, failures
        raise CheckpointError(
            f"none of the checkpoints in {self.directory} (steps {failures}) can be restored; "
            "delete them to start over, or use a new --workdir"
        )

    def restore_latest(self, target, *, set_aside_damaged: bool = False):
        """``(step, state, record)`` of the newest checkpoint that restores, or None if
        there are no checkpoints. Raises ``CheckpointError`` if none restores.

        With ``set_aside_damaged``, checkpoints newer than the one restored that failed
        are moved to ``<workdir>/damaged_checkpoints/`` (kept for inspection, out of the
        way of the saves that will replace them).
        """
        restored = self.restore_newest(target)
        if restored is None:
            return None
        step, state, record, failures = restored
        if set_aside_damaged and failures:
            self.set_aside(failures)
        return step, state, record

    def set_aside(self, steps: list[int], folder_name: str = DAMAGED_CHECKPOINT_DIR) -> None:
        """Moves the checkpoints of ``steps`` to ``<workdir>/<folder_name>/`` (kept for
        inspection, out of the way of the saves that will replace them)."""
        folder = self.directory.parent / folder_name
        folder.mkdir(exist_ok=True)
        for step in steps:
            destination = folder / f"{step}-{time.strftime('%Y%m%dT%H%M%S')}"
            (self.directory / str(step)).rename(destination)
            logging.warning("moved the checkpoint of step %d to %s", step, destination)
        self._manager.reload()

    def delete(self, step: int) -> None:
        """Removes the checkpoint of ``step``."""
        self._manager.delete(int(step))

    def close(self) -> None:
        self._manager.close()
