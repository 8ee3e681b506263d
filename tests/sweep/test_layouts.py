"""``vae_jax/sweep/layouts.py``: a seed sweep is the grid of one cell (no axes) in its own
layout: the same runs, configs and directories as ``runner.seed_members``; the grid's runs
are its cells times its seeds; each layout places the runs it says it places."""

from __future__ import annotations

import json

import pytest

from vae_jax.errors import ConfigError
from vae_jax.run import files
from vae_jax.sweep import grid, layouts, runner


def as_json(config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True, default=str)


def test_a_seed_sweeps_runs_are_the_grid_cell_of_no_axes(tiny_config, tmp_path):
    cells = grid.make_cells(tiny_config, [], [])
    assert [(c.name, c.values) for c in cells] == [("", {})]
    seeds = [4, 0, 9]
    members = layouts.SEEDS.members(tiny_config, cells, seeds, tmp_path)
    expected = runner.seed_members(tiny_config, tmp_path, seeds)
    assert [m.workdir for m in members] == [tmp_path / f"seed_{s}" for s in seeds]
    assert [m.workdir for m in members] == [m.workdir for m in expected]
    assert (
        [m.label for m in members] == [m.label for m in expected] == ["seed 4", "seed 0", "seed 9"]
    )
    assert [as_json(m.config) for m in members] == [as_json(m.config) for m in expected]
    assert [m.config.seed for m in members] == seeds
    assert tiny_config.seed == 0  # the sweep's config is copied, not changed


def test_the_grids_runs_are_its_cells_times_its_seeds(tiny_config, tmp_path):
    cells = grid.make_cells(tiny_config, ["objective.beta=0.5,1.0"], [])
    members = layouts.GRID.members(tiny_config, cells, [1, 2], tmp_path)
    assert [m.label for m in members] == [
        "objective.beta=0.5, seed 1", "objective.beta=0.5, seed 2",
        "objective.beta=1.0, seed 1", "objective.beta=1.0, seed 2",
    ]  # fmt: skip
    assert [(m.config.objective.beta, m.config.seed) for m in members] == [
        (0.5, 1), (0.5, 2), (1.0, 1), (1.0, 2)
    ]  # fmt: skip
    assert members[3].workdir == tmp_path / "objective.beta=1.0" / "seed_2"


def test_a_seed_sweep_places_every_seed_and_a_grid_only_those_left():
    members, left = ["a", "b", "c"], ["c"]
    assert layouts.SEEDS.num_runs_to_place(members, left) == 3
    assert layouts.GRID.num_runs_to_place(members, left) == 1
    assert layouts.GRID.num_runs_to_place(members, []) == 3  # all trained: checked for all


def test_a_grid_definition_is_written_once_and_another_refused_in_one_line(tmp_path):
    definition = {"kind": "grid", "grid": ["objective.beta=0.5,1.0"], "seeds": (0, 1)}
    layouts.check_or_write_definition(tmp_path, definition)
    written = (tmp_path / files.SWEEP_FILE).read_text()
    assert json.loads(written)["seeds"] == [0, 1]  # as read back
    layouts.check_or_write_definition(tmp_path, definition)  # the same sweep: accepted
    with pytest.raises(ConfigError, match=r"differs in \['seeds'\]; use a new --workdir") as e:
        layouts.check_or_write_definition(tmp_path, {**definition, "seeds": (0, 2)})
    assert "\n" not in str(e.value)
    assert (tmp_path / files.SWEEP_FILE).read_text() == written  # left as it was


def test_a_seed_sweeps_bad_config_is_refused_with_the_configs_own_error(tiny_config, tmp_path):
    tiny_config.training.batch_size = 0
    with pytest.raises(ConfigError) as error:
        runner.run_sweep(tiny_config, tmp_path / "sweep", [0, 1])
    assert str(error.value).startswith("training.batch_size=0"), str(error.value)
    assert not (tmp_path / "sweep").exists()  # refused before any work
