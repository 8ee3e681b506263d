"""``vae_jax/sweep/grid.py``: the cells a specification names (``--grid`` flags cross,
``--zip`` flags move together) and bad specifications as one line naming them."""

from __future__ import annotations

import pytest

from vae_jax.errors import ConfigError
from vae_jax.sweep import grid

# --- the cells a specification names -----------------------------------------------------


def test_grid_flags_cross_and_zip_flags_move_together(tiny_config):
    cells = grid.make_cells(
        tiny_config,
        ["objective.beta=0.5,1", "model.hidden_sizes=32:16,8"],
        ["optimizer.learning_rate=1e-3,3e-3", "optimizer.b1=0.8,0.9"],
    )
    values = [c.values for c in cells]
    assert len(values) == 2 * 2 * 2  # two grid axes crossed with the one zipped axis
    assert values[0] == {
        "objective.beta": 0.5,
        "model.hidden_sizes": (32, 16),
        "optimizer.learning_rate": 1e-3,
        "optimizer.b1": 0.8,
    }
    assert values[1]["optimizer.learning_rate"] == 3e-3
    assert values[1]["optimizer.b1"] == 0.9
    assert values[2]["model.hidden_sizes"] == (8,)  # the last axis varies fastest
    zipped = {(v["optimizer.learning_rate"], v["optimizer.b1"]) for v in values}
    assert zipped == {(1e-3, 0.8), (3e-3, 0.9)}  # zipped, never crossed
    assert len({c.name for c in cells}) == len(cells)
    assert cells[0].name == (
        "objective.beta=0.5,model.hidden_sizes=32:16,optimizer.learning_rate=0.001,optimizer.b1=0.8"
    )
    config = grid.cell_config(tiny_config, cells[0], seed=7)
    assert config.objective.beta == 0.5
    assert config.model.hidden_sizes == (32, 16)
    assert config.seed == 7
    assert tiny_config.objective.beta == 1.0  # the base is untouched


@pytest.mark.parametrize(
    ("grid_specs", "zip_specs", "message"),
    [
        (["objective.betta=1,2"], [], "--grid=objective.betta=1,2: the config has no field"),
        (["objective=1,2"], [], "no field 'objective'"),
        (["objective.beta=0.5,abc"], [], "'abc' is not a float value"),
        (["model.latent_dim=2,2.5"], [], "'2.5' is not a int value"),
        (["seed=0,1"], [], "seeds are swept with --seeds"),
        (["objective.beta="], [], "write --grid=<field>=<v1>,<v2>"),
        (["objective.beta=1,1"], [], "a value is named twice"),
        (["objective.beta=1,2"], ["objective.beta=3,4"], "a field is swept twice"),
        ([], ["objective.beta=1,2", "optimizer.b1=0.8"], "every zipped field needs as many"),
        (["objective.beta=1,-1"], [], "grid cell objective.beta=-1.0: objective.beta"),
        (["optimizer.b1=0.9,1.0"], [], "grid cell optimizer.b1=1.0"),
    ],
    ids=[
        "unknown-field",
        "a-group",
        "bad-float",
        "bad-int",
        "seed",
        "no-values",
        "repeated-value",
        "field-twice",
        "zip-lengths",
        "negative-beta",
        "b1-at-one",
    ],
)
def test_bad_specifications_fail_in_one_line_naming_them(
    tiny_config, grid_specs, zip_specs, message
):
    with pytest.raises(ConfigError) as raised:
        grid.make_cells(tiny_config, grid_specs, zip_specs)
    text = str(raised.value)
    assert message in text
    assert "\n" not in text
