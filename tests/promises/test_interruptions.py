"""Runs that are killed, terminated or damaged end exactly where an unbroken run ends."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from tests.helpers.runs import (
    apply_overrides,
    assert_event_files_agree_with_metrics,
    assert_same_metrics,
    assert_same_params,
    checkpoint_steps,
    final_params,
    run,
    run_until,
    saving_in_progress,
    train_command,
)
from vae_jax.errors import CheckpointError, ConfigError
from vae_jax.run import cli, loading
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate

# Kills, damages and resumes training runs: left out by scripts/test.sh --fast.
pytestmark = pytest.mark.slow

# Long enough (in epochs) to be interrupted three times; 54 steps per epoch on the tiny data.
DURABLE = {
    "training.batch_size": 10,
    "training.num_epochs": 16,
    "training.checkpoint_every_epochs": 2,
    "training.keep_checkpoints": 10,
}
DURABLE_FLAGS = [f"--config.{k}={v}" for k, v in DURABLE.items()]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_data_dir) -> Path:
    """The durable config, never interrupted."""
    from experiments.configs import tiny

    config = apply_overrides(tiny.get_config(), DURABLE)
    config.data.data_dir = tiny_data_dir
    workdir = tmp_path_factory.mktemp("reference") / "run"
    train_and_evaluate(config, workdir)
    return workdir


def test_killed_and_terminated_run_ends_bit_identical(reference_run, tiny_data_dir, tmp_path):
    workdir = tmp_path / "interrupted"
    command = train_command(workdir, tiny_data_dir, *DURABLE_FLAGS)

    # 1. kill -9 while the second checkpoint is being written.
    code, _ = run_until(
        command, lambda: len(checkpoint_steps(workdir)) >= 1 and saving_in_progress(workdir)
    )
    assert code == -signal.SIGKILL
    assert saving_in_progress(workdir), "the kill should land during the save"
    saved = checkpoint_steps(workdir)

    # 2. Resume; kill -9 after it has written a new checkpoint (not during a save).
    code, _ = run_until(
        command,
        lambda: len(checkpoint_steps(workdir)) > len(saved) and not saving_in_progress(workdir),
    )
    assert code == -signal.SIGKILL
    assert not saving_in_progress(workdir)
    epochs_before = len(read_metrics(workdir))

    # 3. Resume; SIGTERM: it saves the epoch it finishes and exits with the documented
    #    "stopped, resumable" status.
    code, stderr = run_until(
        command,
        lambda: len(read_metrics(workdir)) > epochs_before,
        signal_to_send=signal.SIGTERM,
    )
    assert code == cli.EXIT_STOPPED == 75, stderr[-3000:]
    terminated_at = len(read_metrics(workdir))
    assert terminated_at < DURABLE["training.num_epochs"]
    _, _, record, _ = loading.load_state(workdir)
    assert record["epoch"] == terminated_at

    # 4. Resume to the end: the same parameters and metrics as the unbroken run.
    result = run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not saving_in_progress(workdir)
    assert_same_params(final_params(workdir), final_params(reference_run))
    assert_same_metrics(workdir, reference_run)
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert len(manifest["resumes"]) == 3
    # TensorBoard shows what metrics.jsonl holds: each record once, one file per segment.
    assert_event_files_agree_with_metrics(workdir)
    assert len(list((workdir / "tensorboard").glob("events.out.tfevents.*"))) == 4


def _damage_newest_checkpoint(workdir: Path) -> int:
    newest = checkpoint_steps(workdir)[-1]
    for path in (workdir / "checkpoints" / str(newest)).rglob("*"):
        if path.is_file() and "/d/" in str(path):
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return newest


def test_truncated_newest_checkpoint_falls_back_to_the_previous(
    reference_run, tiny_config, tmp_path, caplog
):
    workdir = tmp_path / "run"
    shutil.copytree(reference_run, workdir)
    steps = checkpoint_steps(workdir)
    damaged = _damage_newest_checkpoint(workdir)
    _, state, _, _ = loading.load_state(workdir)
    assert int(state.step) == steps[-2]
    assert f"checkpoint {workdir / 'checkpoints' / str(damaged)} cannot be restored" in caplog.text
    # Training from there redoes the last epochs and ends where the reference ended.
    metrics_file = workdir / "metrics.jsonl"
    metrics_file.write_text("".join(metrics_file.read_text().splitlines(True)[:-1]))
    train_and_evaluate(apply_overrides(tiny_config, DURABLE), workdir)
    assert_same_params(final_params(workdir), final_params(reference_run))
    assert_same_metrics(workdir, reference_run)
    assert list((workdir / "damaged_checkpoints").iterdir())  # kept aside, not deleted


def test_no_valid_checkpoint_fails_instead_of_starting_over(reference_run, tiny_config, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference_run, workdir)
    for step in checkpoint_steps(workdir):
        (workdir / "checkpoints" / str(step) / "record" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .* can be restored"):
        train_and_evaluate(apply_overrides(tiny_config, DURABLE), workdir)


def test_resume_with_a_changed_model_fails_naming_the_field(reference_run, tiny_config, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(reference_run, workdir)
    before = sorted(p.name for p in workdir.rglob("*"))
    changed = apply_overrides(tiny_config, {**DURABLE, "model.latent_dim": 8})
    with pytest.raises(ConfigError, match=r"cannot resume: model.latent_dim is 8 .* used 4"):
        train_and_evaluate(changed, workdir)
    assert sorted(p.name for p in workdir.rglob("*")) == before
    changed = apply_overrides(
        tiny_config, {**DURABLE, "model.latent_dim": 4, "data.binarization": "static"}
    )
    with pytest.raises(ConfigError, match=r"data\.binarization"):
        train_and_evaluate(changed, workdir)
