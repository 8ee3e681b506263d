"""Files a run writes, damaged or unwritable: one line naming the file and what to do, a
file the project can rebuild rebuilt (the damaged copy kept), nothing already written
lost, and a refused command that changes nothing."""

from __future__ import annotations

import builtins
import errno
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.repo import REPO, subprocess_env
from tests.helpers.runs import checkpoint_steps
from vae_jax.errors import CheckpointError, UserFacingError
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.run import files
from vae_jax.run.metrics_log import MetricsWriter, read_metrics
from vae_jax.single_run import train_and_evaluate
from vae_jax.sweep.grid import cell_workdir
from vae_jax.sweep.grid_runner import aggregate_sweep, run_grid_sweep
from vae_jax.sweep.runner import run_sweep
from vae_jax.sweep.seeds import seed_workdir

DAMAGED = '{"status": "complete", "final": {"epoch": 3, "st'  # a write cut short


def copy_of(workdir: Path, tmp_path: Path, name: str = "run") -> Path:
    copy = tmp_path / name
    shutil.copytree(workdir, copy)
    return copy


def contents(workdir: Path) -> dict[Path, bytes]:
    """Every file but the lock (which names its latest holder)."""
    return {
        p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != files.LOCK_FILE
    }


def set_aside_copies(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}{files.DAMAGED_SUFFIX}-*"))


# --- files that cannot be rebuilt: one line, nothing changed ------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", [files.MANIFEST_FILE, files.CONFIG_FILE])
def test_a_damaged_start_file_is_one_line_naming_it_and_nothing_changes(
    tiny_run, tiny_config, tmp_path, name
):
    workdir = copy_of(tiny_run.workdir, tmp_path)
    (workdir / name).write_text(DAMAGED)
    before = contents(workdir)
    tiny_config.training.num_epochs = 4
    for command in (
        lambda: train_and_evaluate(tiny_config, workdir),
        lambda: evaluate_run(workdir, num_importance_samples=2, make_figures=False),
    ):
        with pytest.raises(UserFacingError) as refused:
            command()
        message = str(refused.value)
        assert message.startswith(f"{workdir / name} is damaged (not JSON at line 1, column ")
        assert "restore it from a copy" in message
        assert "\n" not in message
        assert contents(workdir) == before


# --- report.json: rebuilt from the checkpoints and metrics -------------------------------


@pytest.mark.slow
def test_a_damaged_report_is_rebuilt_by_the_training_command(tiny_run, tiny_config, tmp_path):
    workdir = copy_of(tiny_run.workdir, tmp_path)
    report_path = workdir / files.REPORT_FILE
    original = json.loads(report_path.read_text())
    report_path.write_text(DAMAGED)
    rebuilt = train_and_evaluate(tiny_config, workdir)  # the same command again
    assert rebuilt["final"] == original["final"]
    assert rebuilt["epochs_completed"] == original["epochs_completed"] == 3
    assert json.loads(report_path.read_text()) == rebuilt
    (aside,) = set_aside_copies(report_path)
    assert aside.read_text() == DAMAGED  # kept for inspection


@pytest.mark.slow
def test_a_damaged_report_is_rebuilt_by_evaluation(tiny_run, tmp_path):
    workdir = copy_of(tiny_run.workdir, tmp_path)
    report_path = workdir / files.REPORT_FILE
    original = json.loads(report_path.read_text())
    report_path.write_text(DAMAGED)
    result = evaluate_run(workdir, num_importance_samples=2, make_figures=False)
    report = json.loads(report_path.read_text())
    assert report["evaluation"] == result
    for field in ("status", "seed", "epochs_completed", "steps", "final", "num_parameters"):
        assert report[field] == original[field], field
    assert report["data"] == original["data"]
    assert "rebuilt" in report
    assert set_aside_copies(report_path)


# --- a full disk: one line naming the file, nothing lost, the same command continues ------


def failing_writes(monkeypatch, name: str):
    """Writes of files called ``name`` fail as on a full disk until ``space.freed``."""
    write_text = Path.write_text

    class Space:
        freed = False

    def full_disk_write(self, *args, **kwargs):
        if self.name.startswith(name) and not Space.freed:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk_write)
    return Space


@pytest.mark.slow
def test_a_full_disk_at_the_start_is_one_line_and_the_same_command_continues(
    tiny_config, tmp_path, monkeypatch
):
    workdir = tmp_path / "run"
    space = failing_writes(monkeypatch, files.CONFIG_FILE)
    tiny_config.training.num_epochs = 1
    with pytest.raises(files.UnwritableError) as full:
        train_and_evaluate(tiny_config, workdir)
    message = str(full.value)
    assert message.startswith(f"could not write {workdir / files.CONFIG_FILE} (No space left")
    assert "run the same command again" in message
    assert not files.run_started(workdir)  # a start cut short: the next one begins afresh
    assert not list(workdir.glob("*.tmp"))  # no temporary file left behind
    space.freed = True
    assert train_and_evaluate(tiny_config, workdir)["epochs_completed"] == 1


@pytest.mark.slow
def test_a_full_disk_during_evaluation_is_one_line_and_loses_nothing(
    tiny_run, tmp_path, monkeypatch
):
    workdir = copy_of(tiny_run.workdir, tmp_path)
    report_path = workdir / files.REPORT_FILE
    before = report_path.read_bytes()
    space = failing_writes(monkeypatch, files.REPORT_FILE)
    with pytest.raises(files.UnwritableError, match=rf"^could not write {report_path} \(No space"):
        evaluate_run(workdir, num_importance_samples=2, make_figures=False)
    assert report_path.read_bytes() == before  # the report as it was
    space.freed = True
    result = evaluate_run(workdir, num_importance_samples=2, make_figures=False)
    assert json.loads(report_path.read_text())["evaluation"] == result


@pytest.mark.slow
def test_a_full_disk_anywhere_else_is_one_line_from_the_command(tmp_path):
    """The entry points' last line of defence: an OSError of a full or read-only file
    system that no layer turned into a message is still one line naming the file."""
    script = (
        "import errno\n"
        "from vae_jax import cli\n"
        "def main(argv):\n"
        f"    raise OSError(errno.ENOSPC, 'No space left on device', {str(tmp_path / 'x')!r})\n"
        "cli.run(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=subprocess_env(), capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: could not write {tmp_path / 'x'} (No space left on device)")
    )


# --- a refused command changes nothing ---------------------------------------------------


def damage_every_checkpoint(workdir: Path) -> None:
    for chunk in (workdir / files.CHECKPOINT_DIR).glob("*/state/d/*"):
        chunk.write_bytes(chunk.read_bytes()[:100])


@pytest.mark.slow
def test_a_run_whose_checkpoints_are_all_damaged_is_refused_with_nothing_changed(
    tiny_run, tiny_config, tmp_path
):
    workdir = copy_of(tiny_run.workdir, tmp_path)
    damage_every_checkpoint(workdir)
    before = contents(workdir)
    tiny_config.training.num_epochs = 5  # a change config.json would record
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .* can be restored"):
        train_and_evaluate(tiny_config, workdir)
    assert contents(workdir) == before
    assert not (workdir / files.DAMAGED_CHECKPOINT_DIR).exists()


@pytest.mark.slow
def test_a_sweep_with_a_seed_that_cannot_resume_changes_no_seed(tiny_config, tmp_path):
    tiny_config.training.num_epochs = 1
    workdir = tmp_path / "sweep"
    run_sweep(tiny_config, workdir, [0, 1], strategy="map", evaluate=False)
    damage_every_checkpoint(seed_workdir(workdir, 1))
    before = {s: contents(seed_workdir(workdir, s)) for s in (0, 1)}
    tiny_config.training.num_epochs = 2
    with pytest.raises(CheckpointError, match=r"none of the checkpoints"):
        run_sweep(tiny_config, workdir, [0, 1], strategy="map", evaluate=False)
    assert {s: contents(seed_workdir(workdir, s)) for s in (0, 1)} == before


# --- sweeps: a damaged cell's report and a damaged sweep.json ----------------------------


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, tiny_data_dir):
    """Two cells of one seed, trained one epoch and evaluated with K=2."""
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    config.training.num_epochs = 1
    workdir = tmp_path_factory.mktemp("grid") / "sweep"
    run_grid_sweep(
        config, workdir, [0], grid_specs=["objective.beta=0.5,1.0"], strategy="map",
        num_importance_samples=2,
    )  # fmt: skip
    return config, workdir


@pytest.mark.slow
def test_aggregate_lists_a_damaged_cell_as_missing_and_a_rerun_rebuilds_it(grid_sweep, tmp_path):
    config, original = grid_sweep
    workdir = copy_of(original, tmp_path, "sweep")
    damaged = cell_workdir(workdir, "objective.beta=1.0", 0) / files.REPORT_FILE
    report = json.loads(damaged.read_text())
    damaged.write_text(DAMAGED)

    table = aggregate_sweep(workdir)
    ((cell, seed, why),) = [(m["cell"], m["seed"], m["why"]) for m in table["missing"]]
    assert (cell, seed) == ("objective.beta=1.0", 0)
    assert why.startswith("report.json is damaged (not JSON at line 1")
    assert [c["seeds_done"] for c in table["cells"]] == [[0], []]  # the other cell counted
    assert damaged.read_text() == DAMAGED  # --aggregate only reads

    run_grid_sweep(
        config, workdir, [0], grid_specs=["objective.beta=0.5,1.0"], strategy="map",
        num_importance_samples=2,
    )  # fmt: skip
    rebuilt = json.loads(damaged.read_text())
    assert rebuilt["final"] == report["final"]
    assert rebuilt["evaluation"]["test_nll"] == report["evaluation"]["test_nll"]
    assert set_aside_copies(damaged)
    assert aggregate_sweep(workdir)["missing"] == []


@pytest.mark.slow
def test_a_damaged_sweep_file_is_one_line_for_aggregate_and_rewritten_by_a_rerun(
    grid_sweep, tmp_path
):
    config, original = grid_sweep
    workdir = copy_of(original, tmp_path, "sweep")
    sweep_file = workdir / files.SWEEP_FILE
    definition = sweep_file.read_text()
    sweep_file.write_text(definition[:50])
    with pytest.raises(files.DamagedFileError, match=r"run the sweep's command again"):
        aggregate_sweep(workdir)
    run_grid_sweep(
        config, workdir, [0], grid_specs=["objective.beta=0.5,1.0"], strategy="map",
        num_importance_samples=2,
    )  # fmt: skip
    assert json.loads(sweep_file.read_text()) == json.loads(definition)
    assert set_aside_copies(sweep_file)


@pytest.mark.slow
def test_a_seed_sweep_lists_a_damaged_seed_as_missing_and_rebuilds_it(tiny_config, tmp_path):
    tiny_config.training.num_epochs = 1
    workdir = tmp_path / "sweep"
    run_sweep(tiny_config, workdir, [0, 1], strategy="map", evaluate=False)
    damaged = seed_workdir(workdir, 1) / files.REPORT_FILE
    report = json.loads(damaged.read_text())
    damaged.write_text(DAMAGED)
    table = aggregate_sweep(workdir)
    assert [m["seed"] for m in table["missing"]] == [1]
    assert table["metrics"]["train/elbo"]["n"] == 1
    run_sweep(tiny_config, workdir, [0, 1], strategy="map", evaluate=False)
    assert json.loads(damaged.read_text())["final"] == report["final"]
    assert checkpoint_steps(seed_workdir(workdir, 1))  # resumed, not started over


# --- a full disk while a resume rewrites metrics.jsonl ------------------------------------


class _DiskFillingUp:
    """``open`` and ``io.open`` (which ``Path.write_text`` calls) for files written directly
    in ``folder``: their writes succeed for ``space`` characters in all, then a write puts
    what still fits and raises ENOSPC, as a disk that fills up does."""

    def __init__(self, folder: Path, space: int, real_open):
        self.folder, self.space, self.real_open = folder.resolve(), space, real_open

    def open(self, file, mode="r", *args, **kwargs):
        handle = self.real_open(file, mode, *args, **kwargs)
        writes = any(flag in mode for flag in "wax+")
        if writes and isinstance(file, (str, Path)) and Path(file).resolve().parent == self.folder:
            return _FileOnAFillingDisk(handle, self)
        return handle


class _FileOnAFillingDisk:
    def __init__(self, handle, disk: _DiskFillingUp):
        self._handle, self._disk = handle, disk

    def write(self, text):
        if len(text) > self._disk.space:
            self._handle.write(text[: self._disk.space])
            self._handle.flush()
            self._disk.space = 0
            raise OSError(errno.ENOSPC, "No space left on device", self._handle.name)
        self._disk.space -= len(text)
        return self._handle.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


@pytest.mark.parametrize("space_fraction", [0.0, 0.5], ids=["no_space", "half_the_records"])
def test_a_full_disk_while_a_resume_rewrites_the_metrics_loses_no_record(
    tmp_path, monkeypatch, space_fraction
):
    """Catches a rewrite of metrics.jsonl that is not atomic (the file truncated, then
    written in place): on resume from epoch 3 of 5 the writer rewrites the file without the
    records after the checkpoint; a disk that fills up part-way through that rewrite must
    leave metrics.jsonl byte for byte as it was (the error is raised), and the same resume
    with space freed keeps exactly epochs 1-3."""
    writer = MetricsWriter(tmp_path, resume_epoch=0, resume_step=0)
    for epoch in range(1, 6):
        writer.write(epoch, 10 * epoch, {"train/loss": 1.0 / epoch, "train/kl": 0.5 * epoch})
    writer.close()
    path = tmp_path / files.METRICS_FILE
    before = path.read_bytes()
    kept = "".join(line + "\n" for line in before.decode().splitlines()[:3])
    disk = _DiskFillingUp(tmp_path, int(space_fraction * len(kept)), builtins.open)
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", disk.open)
        patch.setattr(io, "open", disk.open)
        with pytest.raises((OSError, UserFacingError), match="No space left"):
            MetricsWriter(tmp_path, resume_epoch=3, resume_step=30)
    assert disk.space == 0  # the disk did fill up during the rewrite
    assert path.read_bytes() == before, "a failed rewrite changed metrics.jsonl"
    MetricsWriter(tmp_path, resume_epoch=3, resume_step=30).close()
    assert path.read_text() == kept
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2, 3]
