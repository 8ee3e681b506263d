"""``vae_jax/sweep/grid_runner.py``: a grid sweep: one compilation per program, cells equal
to single runs (a traced cell reproduces), the table has a row per cell, a second run
redoes nothing, another grid in the workdir is refused; tasks share out the cells and a
workdir (one killed and restarted)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.repo import REPO, subprocess_env
from tests.helpers.runs import (
    apply_overrides,
    assert_same_metrics,
    assert_same_params,
    checkpoint_steps,
    counting_compilations,
    final_params,
    run,
    run_until,
)
from vae_jax.errors import ConfigError
from vae_jax.reproduce import reproduce
from vae_jax.run import files
from vae_jax.single_run import train_and_evaluate
from vae_jax.sweep import grid, grid_runner
from vae_jax.sweep.grid import Cell

# --- shares of the cells among tasks ------------------------------------------------------


def _groups(sizes):
    return [[Cell(f"g{g}c{c}", {}) for c in range(size)] for g, size in enumerate(sizes)]


@pytest.mark.parametrize(("sizes", "num_tasks"), [([3, 2], 2), ([4, 1, 2], 3), ([1], 4), ([5], 5)])
def test_task_shares_partition_the_cells_contiguously(sizes, num_tasks):
    groups = _groups(sizes)
    ordered = [c.name for g in groups for c in g]
    shares = [grid_runner.task_share(groups, i, num_tasks) for i in range(num_tasks)]
    flat = [[c.name for g in share for c in g] for share in shares]
    assert [name for share in flat for name in share] == ordered  # each cell once, in order
    assert max(map(len, flat)) - min(map(len, flat)) <= 1
    for share in shares:  # a share's groups hold only cells of one program each
        for group in share:
            assert len({name.split("c")[0] for name in (c.name for c in group)}) == 1
    assert shares == [grid_runner.task_share(groups, i, num_tasks) for i in range(num_tasks)]


def test_task_defaults_come_from_a_slurm_job_array(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # --array=1-4
    assert grid_runner.task_from_environment(None, None) == (2, 4)
    assert grid_runner.task_from_environment(0, None) == (0, 4)
    monkeypatch.delenv("SLURM_ARRAY_TASK_MIN")
    with pytest.raises(ConfigError, match=r"--task_index=3 must be in \[0, --num_tasks=3\)"):
        grid_runner.task_from_environment(None, 3)
    for name in ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name)
    assert grid_runner.task_from_environment(None, None) == (0, 1)
    with pytest.raises(ConfigError, match="--num_tasks=0 must be >= 1"):
        grid_runner.task_from_environment(None, 0)


# --- a grid sweep in this process -----------------------------------------------------------

GRID = ["objective.beta=0.5,1", "model.latent_dim=2,4"]


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory, tiny_data_dir):
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    workdir = tmp_path_factory.mktemp("grid") / "sweep"
    with counting_compilations() as compilations:
        result = grid_runner.run_grid_sweep(
            config, workdir, [0], grid_specs=GRID, strategy="map", num_importance_samples=8
        )
    return workdir, result, dict(compilations)


@pytest.mark.slow
def test_one_compilation_per_program_and_cells_equal_single_runs(grid_sweep, tiny_run):
    workdir, result, compilations = grid_sweep
    assert result["status"] == "complete"
    # Two latent sizes: two programs; the betas are inputs of each.
    assert compilations["sweep_epoch"] == 2
    definition = files.read_json(workdir / files.SWEEP_FILE)
    assert [c["group"] for c in definition["cells"]] == [0, 1, 0, 1]
    # The cell with tiny's own values is, bit for bit, the session's single run of tiny.
    cell = grid.cell_workdir(workdir, "objective.beta=1.0,model.latent_dim=4", 0)
    assert_same_params(final_params(cell), final_params(tiny_run.workdir))
    assert_same_metrics(cell, tiny_run.workdir)
    assert json.loads((cell / files.CONFIG_FILE).read_text()) == json.loads(
        (tiny_run.workdir / files.CONFIG_FILE).read_text()
    )


@pytest.mark.slow
def test_a_traced_cell_equals_its_single_run_and_reproduces(grid_sweep, tiny_config, tmp_path):
    workdir, _, _ = grid_sweep
    cell = grid.cell_workdir(workdir, "objective.beta=0.5,model.latent_dim=2", 0)
    tiny_config.objective.beta = 0.5
    tiny_config.model.latent_dim = 2
    train_and_evaluate(tiny_config, tmp_path / "single")
    assert_same_params(final_params(cell), final_params(tmp_path / "single"))
    assert_same_metrics(cell, tmp_path / "single")
    other = grid.cell_workdir(workdir, "objective.beta=1.0,model.latent_dim=2", 0)
    assert not np.array_equal(  # the beta reached the program
        final_params(cell)["decoder"]["pixels"]["kernel"],
        final_params(other)["decoder"]["pixels"]["kernel"],
    )
    outcome = reproduce(cell)
    assert outcome.reproduced, outcome
    assert outcome.difference is None


@pytest.mark.slow
def test_the_table_has_a_row_per_cell_with_its_evaluation(grid_sweep):
    workdir, result, _ = grid_sweep
    table = files.read_json(workdir / files.SWEEP_TABLE_JSON)
    assert table == json.loads(json.dumps(result["table"]))
    assert [c["name"] for c in table["cells"]] == [
        c["name"] for c in files.read_json(workdir / files.SWEEP_FILE)["cells"]
    ]
    assert table["missing"] == []
    for cell in table["cells"]:
        report = files.read_json(grid.cell_workdir(workdir, cell["name"], 0) / files.REPORT_FILE)
        nll = report["evaluation"]["test_nll"]["nats"]
        assert cell["metrics"]["test/nll_nats"]["mean"] == pytest.approx(nll)
    assert (workdir / files.SWEEP_TABLE_MARKDOWN).read_text().count("objective.beta=") >= 4
    assert (workdir / files.FIGURES_DIR / "grid_objective.beta.png").stat().st_size > 5000


@pytest.mark.slow
def test_running_the_sweep_again_redoes_nothing(grid_sweep, tiny_config):
    workdir, first, _ = grid_sweep
    runs = [grid.cell_workdir(workdir, c["name"], 0) for c in first["table"]["cells"]]
    before = {r: (r / files.REPORT_FILE).read_text() for r in runs}
    steps = {r: checkpoint_steps(r) for r in runs}
    again = grid_runner.run_grid_sweep(
        tiny_config, workdir, [0], grid_specs=GRID, strategy="map", num_importance_samples=8
    )
    assert again["status"] == "complete"
    for run_dir in runs:  # no epoch trained again, no evaluation redone
        assert (run_dir / files.REPORT_FILE).read_text() == before[run_dir]
        assert checkpoint_steps(run_dir) == steps[run_dir]
        assert "resumes" not in files.read_json(run_dir / files.MANIFEST_FILE)  # never reopened
    assert json.dumps(again["table"]) == json.dumps(first["table"])  # NaN std of one seed


@pytest.mark.slow
def test_another_grid_in_the_same_workdir_is_refused(grid_sweep, tiny_config):
    workdir, _, _ = grid_sweep
    before = (workdir / files.SWEEP_FILE).read_text()
    with pytest.raises(ConfigError, match=r"holds another sweep: its sweep\.json differs in"):
        grid_runner.run_grid_sweep(
            tiny_config, workdir, [0], grid_specs=["objective.beta=0.5,2"], strategy="map"
        )
    assert (workdir / files.SWEEP_FILE).read_text() == before


# --- tasks in several processes on one workdir -----------------------------------------------

TASKS = {"training.batch_size": 10, "training.num_epochs": 4}


def sweep_command(workdir, data_dir, *flags):
    return [
        sys.executable, "-m", "experiments.sweep", "--config=experiments/configs/tiny.py",
        f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--seeds=0",
        "--grid=objective.beta=0.5,1", "--num_tasks=2", "--evaluate=false",
        *(f"--config.{k}={v}" for k, v in TASKS.items()), *flags,
    ]  # fmt: skip


@pytest.mark.slow
def test_tasks_share_a_workdir_one_killed_and_restarted(tiny_config, tiny_data_dir, tmp_path):
    workdir = tmp_path / "sweep"
    first = subprocess.Popen(
        sweep_command(workdir, tiny_data_dir, "--task_index=0"), cwd=REPO,
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    second = grid.cell_workdir(workdir, "objective.beta=1.0", 0)
    command = sweep_command(workdir, tiny_data_dir)
    code, _ = run_until(
        command, lambda: len(checkpoint_steps(second)) >= 1, env_extra={"SLURM_ARRAY_TASK_ID": "1"}
    )
    assert code == -signal.SIGKILL
    assert first.wait(timeout=300) == 0, first.communicate()[1].decode()[-3000:]
    # Task 0 wrote only its own cell; the killed task's cell is listed as missing.
    table = grid_runner.aggregate_sweep(workdir)
    missing = [(m["cell"], m["why"]) for m in table["missing"]]
    assert missing == [("objective.beta=1.0", "not trained")]
    assert table["cells"][0]["seeds_done"] == [0]
    # The restarted task resumes its cell; the whole table is then there.
    restarted = run([*command, "--task_index=1"])
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    aggregate = [sys.executable, "-m", "experiments.sweep", f"--workdir={workdir}", "--aggregate"]
    aggregated = run(aggregate)
    assert aggregated.returncode == 0, aggregated.stderr[-3000:]
    table = files.read_json(workdir / files.SWEEP_TABLE_JSON)
    assert table["missing"] == []
    assert all(c["seeds_done"] == [0] for c in table["cells"])
    manifest = files.read_json(second / files.MANIFEST_FILE)
    assert len(manifest["resumes"]) == 1
    # The killed-and-resumed cell ends where an unbroken single run of its config ends.
    apply_overrides(tiny_config, TASKS)
    train_and_evaluate(tiny_config, tmp_path / "single")
    assert_same_params(final_params(second), final_params(tmp_path / "single"))
    assert_same_metrics(second, tmp_path / "single")
