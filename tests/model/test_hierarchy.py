"""Hierarchies of stochastic layers (model.upper_latent_dims, model.inference): the densities
against scipy and quadrature, the two-layer bound against a brute-force log p(x), the
documented keys, the KL per layer and the gradient estimators. A two-layer run end to end,
with its diagnostics per layer, is in tests/experiments/test_results.py (its sweep trains one)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.helpers.runs import apply_overrides
from tests.helpers.small_images import images_for
from tests.helpers.two_layer import (
    ALL_IMAGES,
    PIXELS,
    _brute_force_log_px,
    _grid_points,
    _random_params,
    _scipy_log_normal,
    _tiny,
)
from vae_jax import config_checks, distributions, model, objectives
from vae_jax.errors import ConfigError
from vae_jax.model import hierarchy

INFERENCE = hierarchy.INFERENCE


@functools.partial(jax.jit, static_argnums=(0, 3))
def _log_importance_weights(vae, params, key, num):
    """log p(x, z) - log q(z|x) at ``num`` draws of q (vae.draw) for each of the four images."""
    z, log_q = vae.draw(key, vae.encode(params, ALL_IMAGES), num)
    log_joint = vae.decode(params, z).log_prob(ALL_IMAGES) + vae.prior(params).log_prob(z)
    return log_joint - log_q


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_the_two_layer_bound_converges_to_the_brute_force_log_likelihood(inference):
    """p(x) by quadrature over (z1, z2) sums to 1 over the four images. The importance
    weights p(x, z)/q(z|x) at K = 100000 draws of q average to it within 4 standard errors,
    the IWAE bound (chunked) is the log of that average, and K = 1 (the ELBO) is lower."""
    vae, params = _tiny(inference)
    log_px = _brute_force_log_px(vae, params)
    np.testing.assert_allclose(special.logsumexp(log_px), 0.0, atol=1e-5)
    key, num = jax.random.key(5), 100_000
    log_w = np.asarray(_log_importance_weights(vae, params, key, num), np.float64)
    shift = log_w.max(0)
    weights = np.exp(log_w - shift)
    relative_error = weights.std(0, ddof=1) / weights.mean(0) / np.sqrt(num)
    assert relative_error.max() < 0.01  # q is close enough for the check to be sharp
    log_mean = np.log(weights.mean(0)) + shift
    assert np.all(np.abs(log_mean - log_px) < 4 * relative_error), log_mean - log_px
    bound = jax.jit(vae.iwae_bound, static_argnums=(3, 4))(params, key, ALL_IMAGES, num, 5000)
    np.testing.assert_allclose(bound, log_mean, rtol=1e-5)
    assert np.all(log_w.mean(0) < log_px - 0.01)  # the ELBO, E_q[log w], is below


@functools.partial(jax.jit, static_argnums=0)
def _densities_and_draws(vae, params, z, keys):
    """log q(z|x) and log p(z) on the grid, and one draw of each (q.sample, the prior's
    ancestral sample) per key."""
    x = ALL_IMAGES[0]  # q(z1|x)'s scale is about 3 here (8 for two of the images)
    q, p = vae.encode(params, x), vae.prior(params)
    return {
        "q": (q.log_prob(z), jax.vmap(lambda k: q.sample(k))(keys)),
        "p": (p.log_prob(z), jax.vmap(lambda k: p.sample(k, ()))(keys)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_both_densities_integrate_to_one_and_their_samples_follow_them(inference):
    """On the grid, q(z|x) and p(z) integrate to 1; 20000 draws of each (q.sample, the
    prior's ancestral sample) match the grid's mean and covariance of (z1, z2)."""
    vae, params = _tiny(inference)
    grid = np.linspace(-25.0, 25.0, 1001)  # q(z1|x) of random parameters is broad
    step = grid[1] - grid[0]
    z = _grid_points(grid)
    keys = jax.random.split(jax.random.key(8), 20000)
    densities = _densities_and_draws(vae, params, z, keys)
    for name, (log_prob, draws) in densities.items():
        density = np.exp(np.asarray(log_prob, np.float64)) * step**2
        assert abs(density.sum() - 1.0) < 1e-4, name
        grid_mean = density @ np.asarray(z, np.float64)
        centred = np.asarray(z, np.float64) - grid_mean
        grid_cov = (centred * density[:, None]).T @ centred
        draws = np.asarray(draws, np.float64)
        standard_error = np.sqrt(np.diag(grid_cov) / draws.shape[0])
        assert np.all(np.abs(draws.mean(0) - grid_mean) < 4 * standard_error), name
        np.testing.assert_allclose(np.cov(draws.T), grid_cov, rtol=0.06, atol=0.02, err_msg=name)


def test_the_ladder_merge_is_the_normalized_product_of_the_two_gaussians():
    """Sønderby et al.'s precision-weighted merge against the product of two scipy normal
    densities, normalized by quadrature."""
    bottom_up = distributions.DiagGaussian(jnp.array([1.5, -0.3]), jnp.array([0.2, -1.0]))
    top_down = distributions.DiagGaussian(jnp.array([-0.5, 0.8]), jnp.array([-0.4, 0.3]))
    merged = hierarchy.merge_gaussians(bottom_up, top_down)
    t = np.linspace(-12, 12, 20001)
    for d in range(2):
        product = stats.norm.pdf(t, bottom_up.loc[d], np.exp(bottom_up.log_scale[d])) * (
            stats.norm.pdf(t, top_down.loc[d], np.exp(top_down.log_scale[d]))
        )
        product /= np.trapezoid(product, t)
        mean = np.trapezoid(t * product, t)
        std = np.sqrt(np.trapezoid((t - mean) ** 2 * product, t))
        np.testing.assert_allclose(merged.loc[d], mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.exp(merged.log_scale[d]), std, rtol=1e-5)


def _manual_draw(vae, params, x, key, swap: bool = False) -> np.ndarray:
    """One draw of (z1, z2) rebuilt from the documented keys: split(key, 2)[l - 1] for
    layer l, from the bottom (bottom_up) or from the top (top_down); ``swap`` gives each
    layer the other's key."""
    q = vae.encode(params, x)
    keys = jax.random.split(key, 2)[::-1] if swap else jax.random.split(key, 2)
    noise = [jax.random.normal(k, (*x.shape[:-3], 1)) for k in keys]
    layers = [None, None]
    order = (0, 1) if vae.inference == "bottom_up" else (1, 0)
    for i in order:
        gaussian = q.layer(i, layers)
        layers[i] = gaussian.loc + jnp.exp(gaussian.log_scale) * noise[i]
    return np.asarray(jnp.concatenate(layers, -1))


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_each_layer_draws_with_its_documented_key(inference):
    """A draw of q uses split(key, L)[l - 1] for layer l, and the model's draw s of an
    example uses fold_in(key, s) as for one layer; swapping the layers' keys changes it."""
    vae, params = _tiny(inference)
    x, key = ALL_IMAGES, jax.random.key(21)
    q = vae.encode(params, x)
    np.testing.assert_allclose(q.sample(key), _manual_draw(vae, params, x, key), rtol=1e-6)
    draws = vae.reparameterize(key, q, 3)
    for s in range(3):
        manual = _manual_draw(vae, params, x, jax.random.fold_in(key, s))
        np.testing.assert_allclose(draws[s], manual, rtol=1e-6, atol=1e-7)
    swapped = _manual_draw(vae, params, x, key, swap=True)
    assert np.abs(swapped - np.asarray(q.sample(key))).min() > 1e-3
    generated = vae.generate(params, key, 5)  # z ~ p(z) with split(key)[0], ancestral
    latent_keys = jax.random.split(jax.random.split(key)[0], 2)
    z2 = jax.random.normal(latent_keys[1], (5, 1))
    p1 = vae.prior(params).layer(0, [None, z2])
    z1 = p1.loc + jnp.exp(p1.log_scale) * jax.random.normal(latent_keys[0], (5, 1))
    np.testing.assert_allclose(generated.z, jnp.concatenate([z1, z2], -1), rtol=1e-6, atol=1e-7)


@functools.partial(jax.jit, static_argnums=0)
def _layers_at_the_draws(vae, params, x, key):
    """4 draws of q (reparameterize), split into layers, and each layer's Gaussian under q
    and under p at them."""
    q, p = vae.encode(params, x), vae.prior(params)
    z = vae.reparameterize(key, q, 4)
    layers = hierarchy.split_layers(z, (3, 2))
    return z, layers, [q.layer(i, layers) for i in range(2)], [p.layer(i, layers) for i in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_the_elbo_reports_each_layers_kl_at_the_documented_draws(inference):
    """Layer sizes (3, 2): kl_per_dim summed within each layer is the mean over draws of
    log q(z_l|.) - log p(z_l|z_{l+1}), each density from scipy; the decoder reads z_1 only."""
    vae = model.make_vae(
        image_shape=(4, 4, 1), latent_dim=3, hidden_sizes=(8,),
        upper_latent_dims=(2,), upper_hidden_sizes=(6,), inference=inference,
    )  # fmt: skip
    params = _random_params(jax.eval_shape(vae.init, jax.random.key(1)), jax.random.key(9), 0.5)
    x, key = images_for("bernoulli", 5, (4, 4, 1)), jax.random.key(2)
    out = jax.jit(vae.elbo, static_argnames=("num_samples", "kl"))(
        params, key, x, num_samples=4, kl="mc"
    )
    z, layers, q_layers, p_layers = _layers_at_the_draws(vae, params, x, key)
    expected = []
    for i in range(2):
        log_q = _scipy_log_normal(layers[i], q_layers[i])
        log_p = _scipy_log_normal(layers[i], p_layers[i])
        expected.append((log_q - log_p).mean(0))
    got = hierarchy.layer_sums(np.asarray(out.kl_per_dim, np.float64), (3, 2))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(out.kl, np.sum(expected, 0), rtol=2e-4, atol=2e-4)
    changed_top = np.array(z)
    changed_top[..., 3:] += 1.0
    decode_log_prob = jax.jit(lambda params, z: vae.decode(params, z).log_prob(x))
    np.testing.assert_array_equal(decode_log_prob(params, z), decode_log_prob(params, changed_top))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("likelihood", "name", "inference", "architecture"),
    [  # each likelihood once, both objectives and inferences, one conv encoder
        ("bernoulli", "iwae", "bottom_up", "mlp"),
        ("continuous_bernoulli", "elbo", "top_down", "mlp"),
        ("gaussian", "elbo", "bottom_up", "conv"),
        ("discretized_logistic", "iwae", "top_down", "conv"),
    ],
)
def test_a_hierarchy_trains_with_every_likelihood_and_both_objectives(
    likelihood, name, inference, architecture
):
    """A finite loss whose ELBO terms add up, and a gradient in every network above z_1."""
    vae = model.make_vae(
        image_shape=(4, 4, 1), latent_dim=3, likelihood=likelihood, architecture=architecture,
        hidden_sizes=(8,), conv_channels=(4,), upper_latent_dims=(2,), upper_hidden_sizes=(6,),
        inference=inference,
    )  # fmt: skip
    params = jax.jit(vae.init)(jax.random.key(0))
    objective = objectives.make_objective(vae, name=name, num_samples=3, kl="mc")
    mask = jnp.array([True, True, True, False])
    (loss, metrics), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(
        params, jax.random.key(1), images_for(likelihood, 4, (4, 4, 1)), mask, jnp.int32(0)
    )
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(
        metrics["elbo"], metrics["log_likelihood"] - metrics["kl"], rtol=1e-5, atol=1e-4
    )
    for part in ("generative", "inference"):
        leaves = jax.tree.leaves(grads["hierarchy"][part])
        assert all(np.all(np.isfinite(g)) for g in leaves)
        assert any(np.abs(np.asarray(g)).max() > 0 for g in leaves), part


def _gradients_over_keys(inference, estimators, num_keys=2000):
    """The gradient of each ``(name, estimator, num_samples)`` objective at the same
    ``num_keys`` keys, all computed by one jitted function of the keys."""
    vae, params = _tiny(inference)
    mask = jnp.ones((4,), bool)

    def grads_of(name, estimator, num_samples):
        kl = "mc" if name == "elbo" else "analytic"
        objective = objectives.make_objective(
            vae, name=name, num_samples=num_samples, kl=kl, gradient_estimator=estimator
        )

        def grads(key):
            loss = lambda p: objective(p, key, ALL_IMAGES, mask, jnp.int32(0))[0]
            return jax.grad(loss)(params)

        return grads

    functions = [grads_of(*estimator) for estimator in estimators]
    trees = jax.jit(lambda keys: [jax.vmap(grads)(keys) for grads in functions])(
        jax.random.split(jax.random.key(13), num_keys)
    )
    return [
        {
            part: np.concatenate(
                [np.asarray(g).reshape(num_keys, -1) for g in jax.tree.leaves(tree[part])], axis=1
            )
            for part in tree
        }
        for tree in trees
    ]


def _assert_same_mean(a: np.ndarray, b: np.ndarray):
    """Paired over keys: the mean difference is within 5 standard errors of 0."""
    difference = a - b
    standard_error = difference.std(0, ddof=1) / np.sqrt(difference.shape[0])
    assert np.all(np.abs(difference.mean(0)) <= 5 * standard_error + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_stl_and_dreg_are_unbiased_in_a_hierarchy(inference):
    """Each estimator's mean over keys equals the plain gradient's of the same bound, for
    every part (the ladder's q shares the generative networks); DReG's encoder gradient has
    the lower variance Tucker et al. report."""
    plain_elbo, stl, plain_iwae, dreg = _gradients_over_keys(
        inference,
        [
            ("elbo", "reparameterization", 1),
            ("elbo", "stl", 1),
            ("iwae", "reparameterization", 16),
            ("iwae", "dreg", 16),
        ],
    )
    for part in plain_elbo:
        _assert_same_mean(stl[part], plain_elbo[part])
        _assert_same_mean(dreg[part], plain_iwae[part])
    assert np.abs(plain_iwae["encoder"].mean(0)).max() > 0.01  # a gradient worth estimating
    assert dreg["encoder"].var(0).sum() < plain_iwae["encoder"].var(0).sum()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, r"^objective\.kl='analytic' has no closed form for model\.upper_latent_dims=\(2,\)"),
        (
            {"objective.kl": "mc", "objective.free_bits": 0.5},
            r"^objective\.free_bits=0\.5 needs a KL per latent dimension",
        ),
        (
            {"objective.kl": "mc", "model.prior": "mixture", "objective.free_bits": 0.5},
            r"^objective\.free_bits=0\.5 needs a KL per latent dimension, which model\."
            r"upper_latent_dims=\(2,\) does not have",
        ),
        (
            {"objective.kl": "mc", "model.posterior": "iaf", "objective.gradient_estimator": "stl"},
            r"^objective\.gradient_estimator='stl' needs q's density at any z, which "
            r"model\.posterior='iaf' does not have",
        ),
        ({"objective.kl": "mc", "model.inference": "sideways"}, r"^model\.inference='sideways'"),
        (
            {"objective.kl": "mc", "model.upper_latent_dims": (2, 0)},
            r"^model\.upper_latent_dims\[1\]=0",
        ),
        (
            {"objective.kl": "mc", "model.upper_hidden_sizes": ()},
            r"^model\.upper_hidden_sizes is empty",
        ),
    ],
)
def test_what_a_hierarchy_cannot_do_is_refused_in_one_line(tiny_config, overrides, message):
    apply_overrides(tiny_config, {"model.upper_latent_dims": (2,), **overrides})
    with pytest.raises(ConfigError, match=message) as error:
        config_checks.check_config(tiny_config)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "overrides",
    [{"model.prior": "mixture"}, {"model.prior": "vampprior"}, {"model.posterior": "iaf"}],
)
def test_a_hierarchy_takes_any_prior_on_top_and_any_family_for_z1(tiny_config, overrides):
    """Once refused ("a hierarchy's layers are standard_normal and gaussian"): Tomczak &
    Welling's HVAE + VampPrior and Kingma et al.'s IAF in a hierarchy now pass the checks
    (tests/model/test_compatibility.py bounds them against a brute-force log p(x))."""
    apply_overrides(tiny_config, {"model.upper_latent_dims": (2,), "objective.kl": "mc",
                                  **overrides})  # fmt: skip
    config_checks.check_config(tiny_config)


def test_the_core_refuses_analytic_kl_for_a_hierarchy_without_a_config():
    for prior in ("mixture", "vampprior"):  # built now, not refused
        model.make_vae(image_shape=PIXELS, latent_dim=1, upper_latent_dims=(1,), prior=prior)
    vae, params = _tiny("bottom_up")
    with pytest.raises(ValueError, match="kl='analytic' has no closed form"):
        vae.elbo(params, jax.random.key(0), ALL_IMAGES, kl="analytic")
    assert model.evaluation_kl(vae) == "mc"


@pytest.mark.slow
def test_the_hierarchy_is_initialized_from_the_last_part_of_the_init_key():
    """init splits its key in the order encoder, decoder, hierarchy; the hierarchy splits
    its part in 2 (L - 1), the generative networks first."""
    vae, _ = _tiny("bottom_up")
    key = jax.random.key(3)
    params = jax.jit(vae.init)(key)
    parts = jax.random.split(key, 3)
    generative_key = jax.random.split(parts[2], 2)[0]
    net = hierarchy.GaussianLayer((4,), 1, "tanh")
    expected = jax.jit(net.init)(generative_key, jnp.zeros((1, 1)))["params"]
    got = params["hierarchy"]["generative"]["layer_1"]
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
