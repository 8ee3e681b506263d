"""``vae_jax/evaluation/per_example.py``: every example evaluated once, with its own key,
whatever the batch size."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax.data import Preprocessing


def evaluate_every_example(per_example_fn, params, key, images, batch_size):
    """Runs ``per_example_fn(params, key_i, x_i)`` over stored {0, 1} uint8 ``images``."""
    from vae_jax.evaluation import per_example

    preprocessing = Preprocessing(kind="binary", binarization="static")
    evaluate_batch = per_example.make_batch_evaluator(per_example_fn, preprocessing)
    return per_example.evaluate_examples(evaluate_batch, params, key, images, batch_size)


@pytest.mark.slow
def test_every_example_is_evaluated_exactly_once_with_its_own_key(tiny_model):
    """per_example.py: one result per example, with key fold_in(key, i), whatever the
    batch size and however the last batch is padded."""
    vae, params, elbo = tiny_model
    key = jax.random.key(5)
    images = np.asarray(jax.random.bernoulli(jax.random.key(3), 0.3, (7, 28, 28, 1)), np.uint8)
    alone = [
        elbo(params, jax.random.fold_in(key, i), images[i].astype(np.float32)) for i in range(7)
    ]
    for batch_size in (3, 10):  # 3 batches, the last with 1 example; 1 batch larger than all
        out = evaluate_every_example(
            lambda p, k, x: vae.elbo(p, k, x), params, key, jnp.asarray(images), batch_size
        )
        assert out.elbo.shape == (7,)
        assert out.kl_per_dim.shape == (7, 4)
        for name in ("elbo", "log_likelihood", "kl", "kl_per_dim"):
            np.testing.assert_allclose(
                getattr(out, name),
                np.stack([getattr(a, name) for a in alone]),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name}, batch size {batch_size}",
            )
