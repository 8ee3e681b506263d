"""``vae_jax/sweep/seeds.py``: ``--seeds`` specifications and the ones refused."""

from __future__ import annotations

import pytest

from vae_jax.errors import ConfigError
from vae_jax.sweep.seeds import parse_seeds


def test_seed_specifications():
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("1,3,5") == [1, 3, 5]
    assert parse_seeds("0-2,10") == [0, 1, 2, 10]
    for bad, message in (("3-1", "runs backwards"), ("1,1", "twice"), ("a", "--seeds='a'")):
        with pytest.raises(ConfigError, match=message):
            parse_seeds(bad)
