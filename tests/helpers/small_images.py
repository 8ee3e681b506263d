"""Small image batches of the kind each likelihood models, for unit tests of model parts."""

import jax
import jax.numpy as jnp


def images_for(likelihood: str, n: int, image_shape: tuple[int, int, int]) -> jax.Array:
    """``n`` fixed images: binary for ``bernoulli``, 8-bit integers for
    ``discretized_logistic``, intensities in [0, 1) otherwise."""
    u = jax.random.uniform(jax.random.key(7), (n, *image_shape))
    if likelihood == "bernoulli":
        return (u < 0.4).astype(jnp.float32)
    if likelihood == "discretized_logistic":
        return jnp.floor(u * 256.0)
    return u
