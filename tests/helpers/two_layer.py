"""The two-layer hierarchy on two pixels whose log p(x) is a 2-d integral on a grid:
the model, random parameters and the brute-force log-likelihood (tests of hierarchies and
of AIS)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special, stats

from vae_jax import model

# Two pixels and one unit per layer: log p(x) is a 2-d integral, done on a grid.
PIXELS = (1, 2, 1)
ALL_IMAGES = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], jnp.float32).reshape(4, *PIXELS)
GRID = np.linspace(-9.0, 9.0, 721)
STEP = GRID[1] - GRID[0]


def _random_params(params, key, scale: float):
    """Every parameter drawn ``N(0, scale^2)``: conditionals that depend on their input
    (the heads start near 0), with scales that stay within the quadrature grid's reach.
    Only the leaves' shapes are read (``jax.eval_shape`` of init gives them uncompiled)."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [scale * jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    )


@functools.cache
def _tiny(inference: str):
    """The two-layer model on two pixels with random parameters."""
    vae = model.make_vae(
        image_shape=PIXELS,
        latent_dim=1,
        hidden_sizes=(4,),
        activation="tanh",
        upper_latent_dims=(1,),
        upper_hidden_sizes=(4,),
        inference=inference,
    )
    params = _random_params(jax.eval_shape(vae.init, jax.random.key(3)), jax.random.key(4), 0.5)
    return vae, params


def _grid_points(grid: np.ndarray = GRID) -> jax.Array:
    z1, z2 = np.meshgrid(grid, grid, indexing="ij")
    return jnp.asarray(np.stack([z1, z2], -1).reshape(-1, 2), jnp.float32)


def _scipy_log_normal(z, gaussian) -> np.ndarray:
    return stats.norm.logpdf(
        np.asarray(z, np.float64),
        np.asarray(gaussian.loc, np.float64),
        np.exp(np.asarray(gaussian.log_scale, np.float64)),
    ).sum(-1)


@functools.partial(jax.jit, static_argnums=0)
def _networks_on_grid(vae, params, z):
    """The networks' outputs on the grid: p(z1|z2)'s Gaussian and log p(x|z1) of each image."""
    conditional = vae.prior(params).layer(0, [None, z[:, 1:]])
    return conditional, vae.decode(params, z[:, None]).log_prob(ALL_IMAGES)


def _brute_force_log_px(vae, params) -> np.ndarray:
    """log p(x) = log sum over the grid of p(x|z1) p(z1|z2) p(z2) dz1 dz2, with p(z2) and
    p(z1|z2) from scipy (the network gives p(z1|z2)'s mean and scale)."""
    z = _grid_points()
    conditional, log_likelihood = _networks_on_grid(vae, params, z)
    log_prior = _scipy_log_normal(z[:, :1], conditional) + stats.norm.logpdf(
        np.asarray(z[:, 1], np.float64)
    )
    log_likelihood = np.asarray(log_likelihood, np.float64)
    return special.logsumexp(log_likelihood + log_prior[:, None], axis=0) + 2 * np.log(STEP)
