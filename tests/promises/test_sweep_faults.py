"""Sweeps meeting what a researcher's grid meets: values that are paths, a cell that
diverges, a rerun of a finished sweep, a report that goes stale."""

from __future__ import annotations

import json
import os

import pytest

from vae_jax.run import files
from vae_jax.run.directory import RunDirectory
from vae_jax.sweep import aggregate, grid
from vae_jax.sweep.grid_runner import aggregate_sweep, run_grid_sweep
from vae_jax.sweep.runner import run_sweep
from vae_jax.sweep.seeds import seed_workdir

# --- 6. cell folders safe on every file system --------------------------------------------


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("objective.beta=0.5,optimizer.learning_rate=0.001",
         "objective.beta=0.5,optimizer.learning_rate=0.001"),
        ("data.data_dir=/data/mnist", "data.data_dir=%2Fdata%2Fmnist"),
        ("model.hidden_sizes=512:256", "model.hidden_sizes=512%3A256"),
        ("data.name=a\\b*c?d\"e<f>g|h i", "data.name=a%5Cb%2Ac%3Fd%22e%3Cf%3Eg%7Ch%20i"),
        ("data.name=50%", "data.name=50%25"),
        ("data.name=é", "data.name=%C3%A9"),
        ("data.name=x.", "data.name=x%2E"),
    ],
)  # fmt: skip
def test_a_cell_folder_percent_encodes_what_a_file_name_cannot_hold(name, folder):
    assert grid.cell_folder(name) == folder
    assert set(folder) <= grid.SAFE_CHARACTERS | set("%0123456789ABCDEF")
    assert len(grid.cell_workdir("w", name, 3).parts) == 3  # w / <one folder> / seed_3


def test_long_cell_names_are_cut_with_a_hash_and_stay_distinct():
    names = [f"data.data_dir=/{'x' * 300}/{i}" for i in range(2)]
    folders = [grid.cell_folder(n) for n in names]
    assert folders[0] != folders[1]
    assert all(len(f.encode()) <= grid.MAX_FOLDER_NAME for f in folders)
    assert all(f.startswith("data.data_dir=%2Fxxx") for f in folders)


@pytest.mark.slow
def test_a_grid_over_paths_keeps_each_cell_in_one_folder_and_the_table_finds_them(
    tiny_config, tiny_data_dir, tmp_path
):
    other = tmp_path / "data elsewhere"
    os.symlink(tiny_data_dir, other)  # the same data under a second path
    tiny_config.training.num_epochs = 1
    workdir = tmp_path / "sweep"
    result = run_grid_sweep(
        tiny_config, workdir, [0], grid_specs=[f"data.data_dir={tiny_data_dir},{other}"],
        strategy="map", evaluate=False,
    )  # fmt: skip
    cells = sorted(p.name for p in workdir.iterdir() if p.is_dir() and p.name != "figures")
    assert cells == sorted(grid.cell_folder(f"data.data_dir={d}") for d in (tiny_data_dir, other))
    assert all("%2F" in c and "/" not in c for c in cells)
    assert [c["seeds_done"] for c in result["table"]["cells"]] == [[0], [0]]
    table = aggregate_sweep(workdir)
    assert table["missing"] == []
    assert [c["values"]["data.data_dir"] for c in table["cells"]] == [tiny_data_dir, str(other)]


# --- 10. a diverging cell --------------------------------------------------------------


@pytest.mark.slow
def test_a_diverging_cell_is_recorded_as_failed_and_the_others_finish(tiny_config, tmp_path):
    tiny_config.training.num_epochs = 2
    workdir = tmp_path / "sweep"
    specs = ["optimizer.learning_rate=0.001,1e30"]  # one program; the second cell diverges
    run_grid_sweep(tiny_config, workdir, [0], grid_specs=specs, strategy="map", evaluate=False)
    good = grid.cell_workdir(workdir, "optimizer.learning_rate=0.001", 0)
    bad = grid.cell_workdir(workdir, "optimizer.learning_rate=1e+30", 0)
    assert json.loads((good / files.REPORT_FILE).read_text())["epochs_completed"] == 2
    failure = json.loads((bad / files.REPORT_FILE).read_text())
    assert failure["status"] == "failed"
    assert failure["reason"].startswith("non-finite ")
    assert "optimizer.learning_rate=1e+30, seed 0" in failure["reason"]

    table = aggregate_sweep(workdir)
    ((missing),) = table["missing"]
    assert missing["cell"] == "optimizer.learning_rate=1e+30"
    assert missing["why"] == f"failed: {failure['reason']}"
    assert "failed: non-finite" in (workdir / files.SWEEP_TABLE_MARKDOWN).read_text()

    # A rerun leaves it as it is (the same values would diverge the same way) ...
    before = {p: p.read_bytes() for p in bad.rglob("*") if p.is_file() and p.name != ".lock"}
    run_grid_sweep(tiny_config, workdir, [0], grid_specs=specs, strategy="map", evaluate=False)
    after = {p: p.read_bytes() for p in bad.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
    # ... unless asked: it resumes from its last good checkpoint and fails again.
    run_grid_sweep(
        tiny_config, workdir, [0], grid_specs=specs, strategy="map", evaluate=False,
        retry_failed=True,
    )  # fmt: skip
    assert (bad / f"{files.REPORT_FILE}.failed").exists()
    assert json.loads((bad / files.REPORT_FILE).read_text())["status"] == "failed"


def test_a_failed_seed_is_listed_not_counted_in_a_seed_table(tmp_path):
    reports = (
        {"final": {"train/elbo": -90.0}},
        {"final": {"train/elbo": -100.0}},
        {"status": "failed", "reason": "non-finite train/loss=nan at epoch 1, step 3"},
    )
    for seed, report in enumerate(reports):
        seed_workdir(tmp_path, seed).mkdir(parents=True)
        files.write_json(seed_workdir(tmp_path, seed) / files.REPORT_FILE, report)
    table = aggregate.build_table(tmp_path, [0, 1, 2])
    assert table["missing"] == [
        {"seed": 2, "why": "failed: non-finite train/loss=nan at epoch 1, step 3"}
    ]
    assert table["metrics"]["train/elbo"]["mean"] == -95.0
    assert table["metrics"]["train/elbo"]["per_seed"]["2"] is None
    assert "- seed 2: failed: non-finite" in aggregate.markdown(table)


# --- 13. a finished seed sweep run again ---------------------------------------------------


@pytest.mark.slow
def test_a_finished_seed_sweep_run_again_neither_trains_nor_evaluates_again(tiny_config, tmp_path):
    tiny_config.training.num_epochs = 1
    workdir = tmp_path / "sweep"
    run_sweep(tiny_config, workdir, [0, 1], strategy="map", num_importance_samples=2)
    seed_dirs = [seed_workdir(workdir, s) for s in (0, 1)]
    written = {
        p: (p.stat().st_mtime_ns, p.read_bytes())
        for d in seed_dirs
        for p in d.rglob("*")
        if p.is_file() and p.name != files.LOCK_FILE
    }
    assert any(p.suffix == ".png" for p in written)
    run_sweep(tiny_config, workdir, [0, 1], strategy="map", num_importance_samples=2)
    again = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in written}
    assert again == written  # every seed's files as they were: no re-evaluation, no figures
    # Another K is another evaluation: it is done.
    run_sweep(tiny_config, workdir, [0, 1], strategy="map", num_importance_samples=3)
    report = json.loads((seed_dirs[0] / files.REPORT_FILE).read_text())
    assert report["evaluation"]["num_importance_samples"] == 3


def test_a_stale_evaluation_is_marked_in_report_md_too(tmp_path):
    run = RunDirectory(tmp_path / "run", seed=0, keep_checkpoints=1)
    run.path.mkdir()
    files.write_json(
        run.file(files.REPORT_FILE), {"evaluation": {"checkpoint": {"step": 22, "epoch": 2}}}
    )
    markdown = "# Evaluation\n\n| quantity | value |\n|---|---|\n| checkpoint | step 22 |\n"
    run.file(files.REPORT_MARKDOWN).write_text(markdown)
    run.write_report({"status": "complete", "steps": 22})
    assert run.file(files.REPORT_MARKDOWN).read_text() == markdown  # current: untouched
    later = run.write_report({"status": "complete", "steps": 88})
    page = run.file(files.REPORT_MARKDOWN).read_text().splitlines()
    assert page[0] == "# Evaluation"
    assert page[2] == f"> **Stale:** {later['evaluation']['stale']}"
    assert "\n".join(page[4:]) + "\n" == markdown.split("\n", 2)[2]  # the table kept
    run.write_report({"status": "complete", "steps": 99})  # marked once, with the latest
    assert sum(line.startswith("> **Stale:**") for line in run.file("report.md").open()) == 1
