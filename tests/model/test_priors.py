"""Learned priors (model.prior): the mixture of Gaussians and the VampPrior, against scipy
densities, the documented key derivations, and the standard normal prior they extend."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.helpers.small_images import images_for
from vae_jax import config_checks, model, objectives
from vae_jax.core import distributions, networks
from vae_jax.errors import ConfigError
from vae_jax.model import priors

IMAGE_SHAPE = (4, 4, 1)
LATENT_DIM = 2


def mixture_log_pdf(z, weights, loc, scale) -> np.ndarray:
    """log sum_c w_c N(z; loc_c, diag(scale_c^2)) with scipy, in float64."""
    z = np.asarray(z, np.float64)
    per_component = np.stack(
        [
            stats.multivariate_normal(np.asarray(m, np.float64), np.diag(np.square(s))).logpdf(z)
            for m, s in zip(np.asarray(loc, np.float64), np.asarray(scale, np.float64), strict=True)
        ],
        axis=-1,
    )
    return special.logsumexp(per_component + np.log(np.asarray(weights, np.float64)), axis=-1)


def _random_mixture(key, num_components=3, dim=LATENT_DIM):
    logits_key, loc_key, scale_key = jax.random.split(key, 3)
    return distributions.MixtureOfDiagGaussians(
        jax.random.normal(logits_key, (num_components,)),
        2.0 * jax.random.normal(loc_key, (num_components, dim)),
        0.5 * jax.random.normal(scale_key, (num_components, dim)),
    )


@functools.cache
def _vae(prior="mixture", likelihood="bernoulli", num_components=3):
    return model.make_vae(
        image_shape=IMAGE_SHAPE,
        latent_dim=LATENT_DIM,
        likelihood=likelihood,
        hidden_sizes=(8,),
        prior=prior,
        prior_components=num_components,
    )


@functools.cache
def _params(prior="mixture", likelihood="bernoulli"):
    """``jit(init)`` at key 0, shared by the tests that read it (a test that changes a part
    replaces it in a copy)."""
    return jax.jit(_vae(prior, likelihood).init)(jax.random.key(0))


def _images(likelihood="bernoulli", n=5):
    return images_for(likelihood, n, IMAGE_SHAPE)


def test_mixture_log_prob_matches_scipy():
    mixture = _random_mixture(jax.random.key(0))
    z = 2.0 * jax.random.normal(jax.random.key(1), (4, 5, LATENT_DIM))
    weights = special.softmax(np.asarray(mixture.logits, np.float64))
    reference = mixture_log_pdf(z, weights, mixture.loc, np.exp(mixture.log_scale))
    log_prob = jax.jit(lambda mixture, z: mixture.log_prob(z))(mixture, z)
    np.testing.assert_allclose(log_prob, reference, rtol=1e-5, atol=1e-5)
    assert log_prob.shape == (4, 5)


@pytest.mark.slow
def test_mixture_samples_follow_the_mixture_and_the_documented_keys():
    mixture = _random_mixture(jax.random.key(0))
    key = jax.random.key(3)
    z = np.asarray(mixture.sample(key, (20_000,)), np.float64)
    # The documented derivation: a component from split(key)[0], eps from split(key)[1].
    component_key, normal_key = jax.random.split(key)
    component = jax.random.categorical(component_key, mixture.logits, shape=(20_000,))
    eps = jax.random.normal(normal_key, (20_000, LATENT_DIM))
    rebuilt = mixture.loc[component] + jnp.exp(mixture.log_scale[component]) * eps
    np.testing.assert_array_equal(z, np.asarray(rebuilt, np.float64))
    swapped_component = jax.random.categorical(normal_key, mixture.logits, shape=(20_000,))
    swapped_eps = jax.random.normal(component_key, (20_000, LATENT_DIM))
    swapped = mixture.loc[swapped_component] + jnp.exp(mixture.log_scale[swapped_component]) * (
        swapped_eps
    )
    assert not np.allclose(z, np.asarray(swapped, np.float64))
    # Each coordinate's marginal is the weighted mixture of the components' normals.
    weights = special.softmax(np.asarray(mixture.logits, np.float64))
    loc, scale = np.asarray(mixture.loc, np.float64), np.exp(np.asarray(mixture.log_scale))
    for d in range(LATENT_DIM):

        def cdf(t, d=d):
            return sum(
                w * stats.norm.cdf(t, m, s)
                for w, m, s in zip(weights, loc[:, d], scale[:, d], strict=True)
            )

        assert stats.kstest(z[:, d], cdf).pvalue > 1e-3
    np.testing.assert_allclose(mixture.mean(), weights @ loc, rtol=1e-5)


@pytest.mark.slow
def test_a_mixture_prior_is_built_from_its_parameters_and_its_init_key():
    vae = _vae("mixture", num_components=4)
    key = jax.random.key(11)
    params = jax.jit(vae.init)(key)
    # Documented: a learned prior's parameters come from the third part of split(key, 3).
    _, _, prior_key = jax.random.split(key, 3)
    np.testing.assert_array_equal(
        params["prior"]["loc"], jax.random.normal(prior_key, (4, LATENT_DIM))
    )
    np.testing.assert_array_equal(params["prior"]["logits"], np.zeros(4))
    p = params["prior"]
    p = {**p, "logits": jnp.array([0.3, -1.0, 2.0, 0.0]), "log_scale": p["log_scale"] - 0.4}
    params = {**params, "prior": p}
    z = jax.random.normal(jax.random.key(2), (6, LATENT_DIM))
    reference = mixture_log_pdf(
        z, special.softmax(np.asarray(p["logits"], np.float64)), p["loc"], np.exp(p["log_scale"])
    )
    np.testing.assert_allclose(
        jax.jit(lambda p, z: vae.prior(p).log_prob(z))(params, z), reference, rtol=1e-5, atol=1e-5
    )


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["standard_normal", "mixture"])
def test_the_encoder_is_initialized_from_the_documented_part_of_the_init_key(prior):
    """split(key) for the standard normal prior (unchanged by learned priors), split(key, 3)
    when the prior has parameters of its own."""
    params = jax.jit(_vae(prior).init)(jax.random.key(11))
    parts = 2 if prior == "standard_normal" else 3
    encoder_key = jax.random.split(jax.random.key(11), parts)[0]
    encoder = networks.MLPEncoder((8,), LATENT_DIM, "relu", "float32")
    expected = encoder.init(encoder_key, jnp.zeros((1, *IMAGE_SHAPE)))["params"]
    for a, b in zip(jax.tree.leaves(params["encoder"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    assert ("prior" in params) == (prior != "standard_normal")


@pytest.mark.slow
def test_vampprior_is_the_mean_of_the_encoders_posteriors_at_the_pseudo_inputs():
    vae = _vae("vampprior", num_components=5)
    params = jax.jit(vae.init)(jax.random.key(4))
    pseudo_inputs = jax.nn.sigmoid(params["prior"]["pseudo_input_logits"])
    assert pseudo_inputs.shape == (5, *IMAGE_SHAPE)
    # Initialized near-black as in the paper: 0.05 +- 0.01 per pixel.
    assert abs(float(pseudo_inputs.mean()) - 0.05) < 0.005
    assert 0.005 < float(pseudo_inputs.std()) < 0.015
    q = jax.jit(vae.encode)(params, pseudo_inputs)  # bernoulli data: the encoder sees x unchanged
    z = 2.0 * jax.random.normal(jax.random.key(2), (3, 7, LATENT_DIM))
    reference = mixture_log_pdf(z, np.full(5, 0.2), q.loc, np.exp(q.log_scale))
    np.testing.assert_allclose(
        jax.jit(lambda p, z: vae.prior(p).log_prob(z))(params, z), reference, rtol=1e-5, atol=1e-5
    )


@jax.jit  # one program for both priors (q has the same shape)
def _draws_and_log_q(q, key):
    z = jnp.stack([q.sample(jax.random.fold_in(key, s)) for s in range(3)])  # draw s: fold_in
    return z, q.log_prob(z)


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["mixture", "vampprior"])
def test_monte_carlo_kl_is_log_q_minus_log_p_at_the_documented_draws(prior):
    vae, params = _vae(prior), _params(prior)
    x, key = _images(), jax.random.key(5)
    out = jax.jit(lambda p: vae.elbo(p, key, x, num_samples=3, kl="mc"))(params)
    q = jax.jit(vae.encode)(params, x)
    z, log_q = _draws_and_log_q(q, key)
    p = jax.jit(vae.prior)(params)
    weights = special.softmax(np.asarray(p.logits, np.float64))
    log_p = mixture_log_pdf(z, weights, p.loc, np.exp(p.log_scale))
    log_q = np.asarray(log_q, np.float64)
    np.testing.assert_allclose(out.kl, (log_q - log_p).mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out.kl_per_dim.sum(-1), out.kl, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.elbo, out.log_likelihood - out.kl, rtol=1e-6, atol=1e-4)


@pytest.mark.slow
def test_a_mixture_of_standard_normals_gives_the_standard_normal_bounds():
    """A second way to compute the same numbers: every component N(0, I), any weights."""
    vae, plain = (
        _vae("mixture"),
        model.make_vae(image_shape=IMAGE_SHAPE, latent_dim=LATENT_DIM, hidden_sizes=(8,)),
    )
    params = {
        **_params("mixture"),
        "prior": {
            "logits": jnp.array([0.5, -1.0, 0.2]),
            "loc": jnp.zeros((3, LATENT_DIM)),
            "log_scale": jnp.zeros((3, LATENT_DIM)),
        },
    }
    plain_params = {"encoder": params["encoder"], "decoder": params["decoder"]}
    x, key = _images(), jax.random.key(9)

    @jax.jit
    def bounds(ours, theirs):
        return (
            vae.elbo(ours, key, x, 4, kl="mc"),
            plain.elbo(theirs, key, x, 4, kl="mc"),
            vae.iwae_bound(ours, key, x, 20, chunk_size=7),
            plain.iwae_bound(theirs, key, x, 20, chunk_size=7),
        )

    elbo, plain_elbo, bound, plain_bound = bounds(params, plain_params)
    for name in ("elbo", "log_likelihood", "kl"):
        np.testing.assert_allclose(
            getattr(elbo, name), getattr(plain_elbo, name), rtol=1e-5, atol=1e-5
        )
    np.testing.assert_allclose(bound, plain_bound, rtol=1e-5)
    generated = jax.jit(vae.generate, static_argnums=2)(params, key, 4)
    # generate: z ~ p(z) with split(key)[0] (the mixture draws its own component first).
    latent_key, _ = jax.random.split(key)
    np.testing.assert_array_equal(generated.z, vae.prior(params).sample(latent_key, (4,)))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("prior", "likelihood", "name"),
    [  # each prior with both objectives, each likelihood once (compilations are the cost)
        ("mixture", "bernoulli", "elbo"),
        ("mixture", "gaussian", "iwae"),
        ("vampprior", "continuous_bernoulli", "iwae"),
        ("vampprior", "discretized_logistic", "elbo"),  # integer data, pseudo-inputs in (0, 1)
    ],
)
def test_learned_priors_train_with_every_likelihood_and_both_objectives(prior, likelihood, name):
    vae, params = _vae(prior, likelihood), _params(prior, likelihood)
    objective = objectives.make_objective(vae, name=name, num_samples=3, kl="mc")
    x = _images(likelihood)
    mask = jnp.array([True, True, True, True, False])
    (loss, metrics), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(
        params, jax.random.key(1), x, mask, jnp.int32(0)
    )
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(
        metrics["elbo"], metrics["log_likelihood"] - metrics["kl"], rtol=1e-5, atol=1e-4
    )
    prior_grads = jax.tree.leaves(grads["prior"])
    assert all(np.all(np.isfinite(g)) for g in prior_grads)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in prior_grads)


@pytest.mark.slow
def test_dreg_gives_the_generative_model_the_iwae_gradient_with_a_mixture_prior():
    """DReG changes only the encoder's gradient: decoder and prior get IWAE's, per key."""
    vae, params = _vae("mixture"), _params("mixture")
    x, mask, key = _images(), jnp.ones(5, bool), jax.random.key(3)

    def gradient(estimator):
        objective = objectives.make_objective(
            vae, name="iwae", num_samples=6, gradient_estimator=estimator
        )
        return jax.grad(lambda p: objective(p, key, x, mask, jnp.int32(0))[0])

    gradients = [gradient("reparameterization"), gradient("dreg")]
    plain, dreg = jax.jit(lambda p: [grad(p) for grad in gradients])(params)
    for part in ("prior", "decoder"):
        for a, b in zip(jax.tree.leaves(plain[part]), jax.tree.leaves(dreg[part]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    encoder_differs = [
        not np.allclose(a, b)
        for a, b in zip(
            jax.tree.leaves(plain["encoder"]), jax.tree.leaves(dreg["encoder"]), strict=True
        )
    ]
    assert any(encoder_differs)


def test_analytic_kl_and_free_bits_are_refused_for_learned_priors(tiny_config):
    vae, params = _vae("mixture"), _params("mixture")
    with pytest.raises(ValueError, match="kl='analytic' has no closed form for prior='mixture'"):
        vae.elbo(params, jax.random.key(1), _images(), kl="analytic")
    tiny_config.model.prior = "vampprior"
    with pytest.raises(ConfigError, match=r"^objective\.kl='analytic' has no closed form .*'mc'$"):
        config_checks.check_config(tiny_config)
    tiny_config.objective.kl = "mc"
    config_checks.check_config(tiny_config)
    tiny_config.objective.free_bits = 0.5
    with pytest.raises(ConfigError, match=r"^objective\.free_bits=0\.5 needs a KL per latent"):
        config_checks.check_config(tiny_config)
    tiny_config.objective.free_bits = 0.0
    tiny_config.objective.name, tiny_config.objective.kl = "iwae", "analytic"  # kl: elbo only
    config_checks.check_config(tiny_config)
    assert priors.has_closed_form_kl("standard_normal")
    assert model.evaluation_kl(vae) == "mc"


def _diag_gaussian_log_pdf(z, loc, log_scale):
    """``log N(z; loc, diag(exp(log_scale))^2)`` written out, summed over the last axis."""
    standardized = (z - loc) * jnp.exp(-log_scale)
    return jnp.sum(-0.5 * standardized**2 - log_scale - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


@pytest.mark.slow
@pytest.mark.parametrize("upper_latent_dims", [(), (3,)], ids=["one_layer", "hierarchy_top_layer"])
def test_vampprior_passes_the_gradient_of_log_p_to_the_encoder_and_the_pseudo_inputs(
    upper_latent_dims,
):
    """Catches a VampPrior whose gradient into the encoder is cut (a ``stop_gradient`` on the
    posteriors at the pseudo-inputs, in ``priors.vampprior`` or ``top_posterior_at``): the
    prior's density is unchanged, so only its gradient shows it. ``p(z) = (1/C) sum_c
    q(z | u_c)`` is written out here with ``logsumexp`` from the encoder's posteriors at the
    pseudo-inputs (``vae.encode``, the top layer's Gaussian in a hierarchy); the gradients
    of the mean ``log p(z)`` with respect to the encoder's parameters and the pseudo-inputs'
    logits must equal those of that expression, and not be zero. In a hierarchy the other
    factors of ``p(z)``, ``p(z_l | z_{l+1})``, read neither, so the same holds for the whole
    prior."""
    num_components = 4
    vae = model.make_vae(
        image_shape=IMAGE_SHAPE,
        latent_dim=LATENT_DIM,
        hidden_sizes=(8,),
        prior="vampprior",
        prior_components=num_components,
        upper_latent_dims=upper_latent_dims,
        upper_hidden_sizes=(8,),
    )
    params = jax.jit(vae.init)(jax.random.key(4))
    # Pseudo-inputs that differ from each other, so that the components do too.
    logits = params["prior"]["pseudo_input_logits"]
    params = {
        **params,
        "prior": {
            "pseudo_input_logits": logits + 2.0 * jax.random.normal(jax.random.key(5), logits.shape)
        },
    }
    z = 1.5 * jax.random.normal(jax.random.key(6), (7, vae.latent_dim))
    top = z[:, sum(vae.latent_layers[:-1]) :]

    def log_p(params):
        return vae.prior(params).log_prob(z).mean()

    def by_hand(params):
        u = jax.nn.sigmoid(params["prior"]["pseudo_input_logits"])
        q = vae.encode(params, u)  # bernoulli data: the encoder sees x unchanged
        q = q if not upper_latent_dims else q.top_gaussian()
        per_component = _diag_gaussian_log_pdf(top[:, None, :], q.loc, q.log_scale)  # (N, C)
        return jnp.mean(
            jax.scipy.special.logsumexp(per_component, axis=-1) - jnp.log(num_components)
        )

    found, expected = jax.jit(lambda p: (jax.grad(log_p)(p), jax.grad(by_hand)(p)))(params)
    for part in ("encoder", "prior"):
        leaves = jax.tree_util.tree_leaves_with_path(found[part])
        for (path, a), b in zip(leaves, jax.tree.leaves(expected[part]), strict=True):
            np.testing.assert_allclose(
                a,
                b,
                rtol=1e-4,
                atol=1e-6,
                err_msg=f"d log p(z) / d {part}{jax.tree_util.keystr(path)}",
            )
        assert max(float(np.abs(g).max()) for g in jax.tree.leaves(found[part])) > 1e-5, part
    if not upper_latent_dims:  # one layer: the density itself against the one by hand
        np.testing.assert_allclose(log_p(params), by_hand(params), rtol=1e-5)
