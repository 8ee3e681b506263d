"""TensorBoard event files agree with ``metrics.jsonl`` after any interruption: the curves a
researcher reads in TensorBoard are the records the run kept, each once, for single runs,
seed sweeps and grid cells killed anywhere and resumed."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.helpers.runs import (
    TINY_CONFIG,
    assert_event_files_agree_with_metrics,
    checkpoint_steps,
    event_file_scalars_of_metrics,
    read_tensorboard_scalars,
    run,
    run_until,
    saving_in_progress,
)
from vae_jax.run import files
from vae_jax.run.metrics_log import MetricsWriter, read_metrics
from vae_jax.sweep import grid


def write_epochs(writer: MetricsWriter, epochs, offset: float = 0.0) -> None:
    for epoch in epochs:
        writer.write(epoch, 10 * epoch, {"train/loss": offset + epoch, "train/kl": 0.5 * epoch})


def test_a_resume_drops_the_events_past_the_restored_step_and_writes_a_file_of_its_own(tmp_path):
    first = MetricsWriter(tmp_path, resume_epoch=0, resume_step=0)
    write_epochs(first, range(1, 5))  # epochs 1-4 recorded; the kill lands before epoch 3's save
    first.close()
    second = MetricsWriter(tmp_path, resume_epoch=2, resume_step=20)  # restored at epoch 2
    write_epochs(second, range(3, 6), offset=100.0)  # epochs 3-5 again, other numbers
    second.close()
    scalars = read_tensorboard_scalars(tmp_path / files.TENSORBOARD_DIR)
    assert scalars["train/loss"] == [(10, 1.0), (20, 2.0), (30, 103.0), (40, 104.0), (50, 105.0)]
    assert scalars == event_file_scalars_of_metrics(tmp_path)
    # Two segments, two files, in the order they were written (same second, same process).
    assert len(list((tmp_path / files.TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2


def test_a_resume_to_the_start_leaves_no_events_and_a_damaged_record_takes_its_events(tmp_path):
    writer = MetricsWriter(tmp_path, resume_epoch=0, resume_step=0)
    write_epochs(writer, range(1, 4))
    writer.close()
    lines = (tmp_path / files.METRICS_FILE).read_text().splitlines()
    (tmp_path / files.METRICS_FILE).write_text(f"{lines[0]}\n{lines[1][:20]}\n{lines[2]}\n")
    MetricsWriter(tmp_path, resume_epoch=3, resume_step=30).close()  # epoch 2's record is lost
    loss_events = read_tensorboard_scalars(tmp_path / "tensorboard")["train/loss"]
    assert [step for step, _ in loss_events] == [10, 30]
    assert_event_files_agree_with_metrics(tmp_path)
    MetricsWriter(tmp_path, resume_epoch=0, resume_step=0).close()  # no checkpoint: afresh
    assert read_tensorboard_scalars(tmp_path / "tensorboard") == {}
    assert read_metrics(tmp_path) == []


def test_events_a_kill_lost_are_written_again_for_the_records_kept(tmp_path):
    writer = MetricsWriter(tmp_path, resume_epoch=0, resume_step=0)
    write_epochs(writer, range(1, 3))
    writer.close()
    for path in (tmp_path / "tensorboard").glob("events.out.tfevents.*"):
        path.write_bytes(path.read_bytes()[:-30])  # the last event cut short
    MetricsWriter(tmp_path, resume_epoch=2, resume_step=20).close()
    assert_event_files_agree_with_metrics(tmp_path)


# --- killed sweeps: seeds and grid cells ------------------------------------------------

SWEEP_FLAGS = [
    "--config.training.batch_size=10",
    "--config.training.num_epochs=6",
    "--config.training.checkpoint_every_epochs=2",
    "--config.training.keep_checkpoints=10",
    "--strategy=map",
    "--noevaluate",
]


def sweep_command(workdir: Path, data_dir: str, kind: str) -> list[str]:
    command = [
        sys.executable, "-m", "experiments.sweep", f"--config={TINY_CONFIG}",
        f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", *SWEEP_FLAGS,
    ]  # fmt: skip
    if kind == "seeds":
        return [*command, "--seeds=0,1"]
    return [*command, "--seeds=0", "--grid=objective.beta=0.5,1.0"]


def run_dirs(workdir: Path, kind: str) -> list[Path]:
    if kind == "seeds":
        return [workdir / "seed_0", workdir / "seed_1"]
    return [grid.cell_workdir(workdir, f"objective.beta={b}", 0) for b in ("0.5", "1.0")]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seeds", "grid"])
def test_a_sweep_killed_during_a_save_and_mid_epoch_ends_with_agreeing_event_files(
    tiny_data_dir, tmp_path, kind
):
    workdir = tmp_path / "sweep"
    command = sweep_command(workdir, tiny_data_dir, kind)
    runs = run_dirs(workdir, kind)

    # 1. kill -9 while a checkpoint is being written (after the first one of some run).
    code, _ = run_until(
        command, lambda: any(checkpoint_steps(r) and saving_in_progress(r) for r in runs)
    )
    assert code == -signal.SIGKILL
    # 2. Resume; kill -9 in the middle of an epoch, records written past the last save.
    recorded = sum(len(read_metrics(r)) for r in runs)
    code, _ = run_until(command, lambda: sum(len(read_metrics(r)) for r in runs) >= recorded + 3)
    assert code == -signal.SIGKILL
    # 3. Resume to the end.
    result = run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    for run_dir in runs:
        assert [r["epoch"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5, 6]
        assert_event_files_agree_with_metrics(run_dir)
        assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) >= 2
