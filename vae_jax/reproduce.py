"""Re-run a run from its manifest and compare parameters and metrics bit for bit.

The run's config (seed included) and data are read back from its workdir; training is
repeated in a scratch directory up to epoch N (default: the last completed epoch), segment
by segment when the user changed fields on resume (``--allow_change``), and the
parameters are compared with the original checkpoint of that epoch, leaf by leaf, and
every metric of epochs 1..N with ``metrics.jsonl`` (wall-clock fields excluded). Package
versions, backend and XLA flags that differ from the manifest's are reported first: they
are the usual reason a re-run is not bit-identical.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import jax
import ml_collections
import numpy as np

from vae_jax.errors import CheckpointError
from vae_jax.run import checkpointing, files, loading, manifest, runtime
from vae_jax.run.metrics_log import read_metrics, read_records, without_timing
from vae_jax.single_run import train_and_evaluate
from vae_jax.training import resume


@dataclasses.dataclass
class Outcome:
    reproduced: bool
    epoch: int
    warnings: list[str]
    difference: str | None = None


def leaf_name(path) -> str:
    """``params/decoder/pixels/kernel`` from a pytree key path."""
    parts = []
    for key in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
    return "/".join(parts)


def first_differing_leaf(original, rerun, *, what: str = "parameter") -> str | None:
    """The first leaf (in tree order) whose bits differ, described as ``what`` (e.g.
    "optimizer state"); None if all equal."""
    for (path, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(original),
        jax.tree_util.tree_leaves_with_path(rerun),
        strict=True,
    ):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b):
            detail = (
                f"max |difference| {np.max(np.abs(a.astype(np.float64) - b)):.3g}"
                if a.shape == b.shape
                else f"shape {a.shape} vs {b.shape}"
            )
            return f"{what} {leaf_name(path)} differs ({detail})"
    return None


def first_differing_metric(original: list[dict], rerun: list[dict]) -> str | None:
    for a, b in zip(original, rerun, strict=False):
        a, b = without_timing(a), without_timing(b)
        for name in sorted(a.keys() | b.keys()):
            if a.get(name) != b.get(name):
                return (
                    f"metric {name} of epoch {a.get('epoch')} differs "
                    f"({a.get(name)!r} recorded, {b.get(name)!r} now)"
                )
    if len(original) != len(rerun):
        return f"{len(original)} metric records recorded, {len(rerun)} now"
    return None


def environment_warnings(workdir: Path) -> list[str]:
    """What differs from the manifest in what bit-exact reproduction depends on: the
    environment, the code's commit, and code that no commit holds (the run, or a resume
    of it, trained from a work tree with uncommitted changes that this one does not
    have: their sha256 differs, or was not recorded)."""
    recorded = files.read_json(workdir / files.MANIFEST_FILE)
    current = manifest.git_state()
    warnings = manifest.environment_differences(
        recorded["environment"], manifest.environment()
    ) + manifest.code_differences(recorded.get("git"), current)
    segments_git = [("the start", recorded.get("git"))] + [
        (f"the resume of {r.get('time', '?')}", r.get("git")) for r in recorded.get("resumes", [])
    ]
    dirty = [what for what, git in segments_git if _uncommitted_elsewhere(git, current)]
    if dirty:
        warnings.append(
            "code: the run was trained from a work tree with uncommitted changes ("
            + ", ".join(dirty)
            + ") that no commit holds and this work tree does not have: the re-run uses the "
            "code as it is now"
        )
    return warnings


def _uncommitted_elsewhere(recorded_git: dict | None, current: dict) -> bool:
    """Whether ``recorded_git`` says a segment trained with uncommitted changes that are
    not this work tree's (another commit, or changes with another sha256)."""
    if not (recorded_git or {}).get("dirty"):
        return False
    same_code = (
        recorded_git.get("commit") == current.get("commit")
        and recorded_git.get("diff_sha256") is not None
        and recorded_git.get("diff_sha256") == current.get("diff_sha256")
    )
    return not same_code


def _target_epoch(workdir: Path, epochs: int | None) -> tuple[int, int]:
    """(epoch, step) of the original checkpoint to compare with: the newest (or that of
    ``epochs``), as the checkpoints themselves record it, whatever metrics.jsonl says."""
    checkpointer = checkpointing.Checkpointer(workdir / files.CHECKPOINT_DIR, 1, read_only=True)
    step_by_epoch = {}
    try:
        for step in checkpointer.steps():
            try:
                step_by_epoch[checkpointer.record(step)["epoch"]] = step
            except CheckpointError as error:  # damaged: not a checkpoint to compare with
                print(f"warning: {error}", flush=True)
    finally:
        checkpointer.close()
    saved_epochs = sorted(step_by_epoch)
    if not saved_epochs:
        raise CheckpointError(f"{workdir} has no checkpoint to reproduce")
    epoch = saved_epochs[-1] if epochs is None else epochs
    if epoch not in saved_epochs:
        raise CheckpointError(
            f"--epochs={epoch}: {workdir} has checkpoints of epochs {saved_epochs} only"
        )
    return epoch, step_by_epoch[epoch]


def metrics_log_difference(workdir: Path, epoch: int) -> str | None:
    """What is wrong with the recorded metrics up to ``epoch`` before any re-run: a line
    that is not a record, or records that are not exactly epochs 1..epoch in order."""
    records, damaged = read_records(workdir)
    if damaged:
        number, text = damaged[0]
        return f"{files.METRICS_FILE} line {number} is not a metric record: {text[:80]!r}"
    epochs = [r["epoch"] for r in records if r["epoch"] <= epoch]
    if epochs != list(range(1, epoch + 1)):
        return (
            f"{files.METRICS_FILE} holds records of epochs {epochs} up to epoch {epoch}, not "
            f"one of each epoch 1..{epoch}"
        )
    return None


def segments(workdir: Path, config) -> list[tuple[int, object, tuple[str, ...]]]:
    """``(first epoch after which it applies, config, fields it changed)`` of each segment
    of a run: the config it was created with, then each resume that changed fields by
    ``--allow_change``. Fields that may change freely on resume come from ``config``."""
    recorded = files.read_json(workdir / files.MANIFEST_FILE)
    # A resume that never restored (it failed before) trained nothing: it has no from_epoch.
    opted = [
        r for r in recorded.get("resumes", []) if r.get("changed_by_opt_in") and "from_epoch" in r
    ]
    if not opted:
        return [(0, config, ())]
    result = []
    starts = [(0, files.with_added_fields(recorded["config"]), ())] + [
        (r["from_epoch"], files.with_added_fields(r["config"]), tuple(r["changed_by_opt_in"]))
        for r in opted
    ]
    current = resume.flatten(resume.config_as_json(config))
    for start, recorded_config, changed in starts:
        segment_config = ml_collections.ConfigDict(recorded_config)
        for field, value in current.items():  # fields that may change freely: as now
            if resume.may_change(field):
                group, name = field.rsplit(".", 1)
                segment_config[group][name] = value
        result.append((start, segment_config, changed))
    return result


def replay_segments(workdir: Path, config, rerun_dir: Path, epoch: int) -> None:
    """Trains ``rerun_dir`` up to ``epoch`` as ``workdir`` was trained, segment by
    segment (each resumed with the fields its user changed)."""
    parts = segments(workdir, config)
    for i, (start, segment_config, changed) in enumerate(parts):
        if start >= epoch:
            break
        end = parts[i + 1][0] if i + 1 < len(parts) else epoch
        train_and_evaluate(
            segment_config,
            rerun_dir,
            stop_after_epoch=min(end, epoch),
            allow_change=changed,
            announce=False,  # the re-run's folder is deleted: no paths or resume hints
        )


def reproduce(
    workdir: str | Path,
    *,
    epochs: int | None = None,
    scratch: str | None = None,
    data_dir: str | None = None,
):
    """Re-runs ``workdir`` up to ``epochs`` and compares; returns an ``Outcome``.
    ``data_dir`` says where the run's data is now, if it moved (its fingerprints are
    compared with the recorded ones)."""
    workdir = files.workdir_path(workdir)
    config = loading.load_config(workdir)
    if data_dir:
        config.data.data_dir = data_dir
    runtime.apply_runtime_config(config)  # the run's settings, as the re-run will use them
    warnings = environment_warnings(workdir)
    for warning in warnings:
        print(f"warning: the environment differs from the manifest's: {warning}", flush=True)
    epoch, step = _target_epoch(workdir, epochs)
    damage = metrics_log_difference(workdir, epoch)
    if damage:  # no re-run can match edited or damaged records
        return Outcome(False, epoch, warnings, damage)
    _, original_state, _, _ = loading.load_state(workdir, step)
    with tempfile.TemporaryDirectory(prefix="vae_jax_reproduce_") as tmp:
        rerun_dir = Path(scratch) if scratch else Path(tmp) / "rerun"
        replay_segments(workdir, config, rerun_dir, epoch)
        data_difference = _data_difference(workdir, rerun_dir)
        _, rerun_state, _, _ = loading.load_state(rerun_dir, step)
        rerun_metrics = read_metrics(rerun_dir)
    original_metrics = [r for r in read_metrics(workdir) if r["epoch"] <= epoch]
    difference = (
        data_difference
        or first_differing_leaf(original_state.params, rerun_state.params)
        or first_differing_leaf(
            original_state.opt_state, rerun_state.opt_state, what="optimizer state"
        )
        or first_differing_metric(original_metrics, rerun_metrics)
    )
    return Outcome(difference is None, epoch, warnings, difference)


def _data_difference(workdir: Path, rerun_dir: Path) -> str | None:
    """Other source data, or the same data preprocessed or split with other keys."""
    original, rerun = files.recorded_data_record(workdir), files.recorded_data_record(rerun_dir)
    return files.data_difference(
        original["fingerprint_sha256"], rerun["fingerprint_sha256"]
    ) or files.protocol_difference(original, rerun)
