"""The combinations the compatibility table allows, built small (four pixels, two latent
units): the model of a combination, its objective and random parameters (tests of the table
and of every allowed combination)."""

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax import model, objectives
from vae_jax.model import compatibility

IMAGE = (2, 2, 1)  # four pixels: the conv architecture halves it once
X = jnp.array(
    [[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1], [1, 0, 1, 1], [1, 1, 1, 1]], jnp.float32
).reshape(5, *IMAGE)
MASK = jnp.array([True, True, True, True, False])  # the last example is padding


def _vae(prior, posterior, num_layers, inference, architecture):
    return model.make_vae(
        image_shape=IMAGE,
        latent_dim=2,
        hidden_sizes=(6,),
        conv_channels=(3,),
        architecture=architecture,
        activation="tanh",
        prior=prior,
        prior_components=3,
        posterior=posterior,
        flow_steps=2,
        flow_hidden_size=5,
        upper_latent_dims=(2,) * (num_layers - 1),
        upper_hidden_sizes=(5,),
        inference=inference,
    )


def _model_parts(c: compatibility.Combination) -> tuple:
    return (c.prior, c.posterior, c.num_layers, c.inference, c.architecture)


ALLOWED = compatibility.allowed()
MODELS = sorted({_model_parts(c) for c in ALLOWED})


def _objective(vae, c: compatibility.Combination):
    return objectives.make_objective(
        vae,
        name=c.objective,
        num_samples=2,
        kl=c.kl,
        free_bits=c.free_bits,
        gradient_estimator=c.gradient_estimator,
    )


def _random_params(params, seed: int, scale: float):
    """Every parameter drawn ``N(0, scale^2)`` by numpy (only the shapes of ``params`` are
    read: ``jax.eval_shape`` of init gives them uncompiled)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda leaf: jnp.asarray(scale * rng.normal(size=leaf.shape), leaf.dtype), params
    )
