"""vae_jax.core.draws gives the bits of jax.random's own draws (ranks 0, 2 and 4, float32 and
bfloat16, keys batched under vmap): every run's numbers (and the README's key table,
rebuilt with jax.random in tests/promises/test_key_derivations.py) depend on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.core import draws

# Compiles every draw at every shape: left out by scripts/test.sh --fast.
pytestmark = pytest.mark.slow

SHAPES = [(), (3, 4), (2, 3, 4, 1)]


@jax.jit  # one program for every comparison
def _ours_and_jax(key):
    ours, theirs = {}, {}
    for i, shape in enumerate(SHAPES):
        k = jax.random.fold_in(key, i)
        for dtype in (jnp.float32, jnp.bfloat16):
            name = f"normal{shape}-{jnp.dtype(dtype).name}"
            ours[name] = draws.normal(k, shape, dtype)
            theirs[name] = jax.random.normal(k, shape, dtype)
        ours[f"uniform{shape}"] = draws.uniform(k, shape)
        theirs[f"uniform{shape}"] = jax.random.uniform(k, shape)
        ours[f"logistic{shape}"] = draws.logistic(k, shape)
        theirs[f"logistic{shape}"] = jax.random.logistic(k, shape)
        probabilities = jax.random.uniform(jax.random.fold_in(k, 99), shape)
        ours[f"bernoulli{shape}"] = draws.bernoulli(k, probabilities)
        theirs[f"bernoulli{shape}"] = jax.random.bernoulli(k, probabilities)
    keys = jax.random.split(key, 3)  # batched keys, as under vmap over examples
    ours["vmapped"] = jax.vmap(lambda k: draws.normal(k, (3, 4)))(keys)
    theirs["vmapped"] = jax.vmap(lambda k: jax.random.normal(k, (3, 4)))(keys)
    return ours, theirs


def test_every_draw_has_the_bits_of_jax_random():
    ours, theirs = _ours_and_jax(jax.random.key(7))
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].shape == theirs[name].shape, name
        assert ours[name].dtype == theirs[name].dtype, name
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
    # and the draws are draws: not all equal, bernoulli at its probabilities' shape
    assert len(np.unique(np.asarray(ours["normal(2, 3, 4, 1)-float32"]))) == 24
    assert ours["bernoulli(2, 3, 4, 1)"].dtype == jnp.bool_
