"""A hierarchy's VampPrior is the top layer's posterior at the pseudo-inputs, so its density
depends on every parameter on the way there: the encoder's, the hierarchy's (bottom-up and
top-down inference reach z_L through the upper networks) and the pseudo-inputs'. A
``stop_gradient`` anywhere on that way would train a different model; these tests fail on
one, checking each gradient against a finite difference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import model


def _vae(inference: str, version: int):
    return model.make_vae(
        image_shape=(4, 4, 1),
        hidden_sizes=(8,),
        latent_dim=3,
        upper_latent_dims=(2,),
        upper_hidden_sizes=(6,),
        inference=inference,
        prior="vampprior",
        prior_components=3,
        mixture_density_version=version,
    )


def _first_leaf_path(tree) -> tuple:
    path, _ = jax.tree_util.tree_flatten_with_path(tree)[0][0]
    return path


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("inference", ["bottom_up", "top_down", "top_down_skip"])
@pytest.mark.slow
def test_the_vampprior_density_has_the_gradient_of_every_part_on_its_way(inference, version):
    vae = _vae(inference, version)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: a.astype(jnp.float64), vae.init(jax.random.key(0)))
        z = jax.random.normal(jax.random.key(1), (4, 2), jnp.float64)  # z_2, the top layer

        def log_prior(p):
            return jnp.sum(vae.prior(p).top.log_prob(z))  # p(z_L): the VampPrior

        grads = jax.grad(log_prior)(params)
        for part in ("encoder", "hierarchy", "prior"):
            if part == "hierarchy" and inference == "top_down_skip":
                continue  # there the encoder itself describes z_L (tests/test_networks.py)
            leaves = jax.tree_util.tree_leaves_with_path(params[part])
            norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads[part])]
            assert max(norms) > 1e-6, (part, norms)
            # one coordinate of the part's largest gradient against a central difference
            index = int(np.argmax(norms))
            path, leaf = leaves[index]
            flat_grad = np.asarray(jax.tree.leaves(grads[part])[index]).reshape(-1)
            j = int(np.argmax(np.abs(flat_grad)))
            eps = 1e-6

            def shifted(delta, path=path, leaf=leaf, j=j, part=part):
                moved = leaf.reshape(-1).at[j].add(delta).reshape(leaf.shape)
                new_part = jax.tree_util.tree_map_with_path(
                    lambda p, a: moved if p == path else a, params[part]
                )
                return float(log_prior({**params, part: new_part}))

            numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
            np.testing.assert_allclose(flat_grad[j], numeric, rtol=1e-4, atol=1e-8)
