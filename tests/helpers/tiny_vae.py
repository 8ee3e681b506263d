"""The ``tiny`` VAE and its initial parameters built once per process, binary images for
it, and the count of a jaxpr's primitives (where random bits are drawn)."""

import functools

import jax
import jax.numpy as jnp

import vae_jax
from experiments.configs import tiny

RANDOM_DRAW_PRIMITIVES = {"random_bits"}  # where bits are drawn; splits/fold_ins derive keys


def count_primitives(jaxpr, names) -> int:
    """Number of equations with a primitive in ``names``, searching sub-jaxprs too."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in names:
            count += 1
        for sub in jax.core.jaxprs_in_params(eqn.params):
            count += count_primitives(sub, names)
    return count


@functools.partial(jax.jit, static_argnums=(1, 2))  # one program, not one per op
def _binary_images(key, n, shape=(28, 28, 1)):
    return jax.random.bernoulli(key, 0.3, (n, *shape)).astype(jnp.float32)


@functools.cache
def _tiny_vae_and_params():
    """The tiny model and its initial parameters, built once per test session."""
    vae = vae_jax.vae_from_config(tiny.get_config(), image_shape=(28, 28, 1))
    return vae, jax.jit(vae.init)(jax.random.key(0))
