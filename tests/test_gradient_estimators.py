"""Gradient estimators (objective.gradient_estimator): each changes the gradient, never the
value; each is unbiased for the gradient of its bound; each has lower variance where its
paper says so. Checked on the linear Gaussian VAE, whose ELBO has a closed form.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from linear_gaussian import OBSERVATION_SCALE, data, linear_gaussian_vae, posterior_params

import vae_jax
from experiments.configs import tiny
from vae_jax import objectives

NUM_KEYS = 2000


def _batch(num=8):
    x, _ = data(num=num, seed=3)
    return x, jnp.ones((num,), bool)


def _objective(name, estimator, num_samples):
    kl = "mc" if name == "elbo" else "analytic"
    return objectives.make_objective(
        linear_gaussian_vae(),
        name=name,
        num_samples=num_samples,
        kl=kl,
        gradient_estimator=estimator,
    )


ESTIMATORS = {"elbo": "stl", "iwae": "dreg"}  # each bound's estimator besides the plain one


@functools.cache
def _compiled_over_keys(name, num_samples):
    """One jitted function of (params, keys): per key, the loss and its gradient with the
    plain estimator and with the bound's own (``ESTIMATORS``)."""
    x, mask = _batch()
    functions = {}
    for estimator in ("reparameterization", ESTIMATORS[name]):
        objective = _objective(name, estimator, num_samples)

        def loss_and_grad(params, key, objective=objective):
            (loss, _), grads = jax.value_and_grad(objective, has_aux=True)(
                params, key, x, mask, jnp.int32(0)
            )
            return loss, grads

        functions[estimator] = jax.vmap(loss_and_grad, in_axes=(None, 0))
    return jax.jit(lambda params, keys: {k: f(params, keys) for k, f in functions.items()})


@functools.cache
def _both_over_keys(name, num_samples, exact_posterior):
    params = posterior_params(linear_gaussian_vae(), exact_posterior=exact_posterior)
    keys = jax.random.split(jax.random.key(11), NUM_KEYS)
    return _compiled_over_keys(name, num_samples)(params, keys)


def _gradients_over_keys(name, estimator, num_samples, exact_posterior):
    """(NUM_KEYS, P) gradients of the loss, one row per key, and the loss values."""
    losses, grads = _both_over_keys(name, num_samples, exact_posterior)[estimator]
    return np.asarray(losses), grads


def _flat(grads, part):
    leaves = jax.tree.leaves(grads[part])
    return np.concatenate([np.asarray(g).reshape(NUM_KEYS, -1) for g in leaves], axis=1)


def _exact_elbo_gradient(params):
    """The gradient of the exact mean ELBO of the batch: E_q log p(x|z) in closed form for a
    linear Gaussian decoder, minus the analytic KL."""
    vae = linear_gaussian_vae()
    x, _ = _batch()

    def negative_elbo(p):
        q = vae.encode(p, x)
        kernel, bias = p["decoder"]["pixels"]["kernel"], p["decoder"]["pixels"]["bias"]
        flat_x = x.reshape(x.shape[0], -1)
        mean = q.loc @ kernel + bias
        spread = jnp.square(q.scale) @ jnp.square(kernel)  # sum_j K_jd^2 sigma_j^2
        s2 = OBSERVATION_SCALE**2
        log_likelihood = jnp.sum(
            -0.5 * jnp.log(2 * jnp.pi * s2) - (jnp.square(flat_x - mean) + spread) / (2 * s2),
            axis=-1,
        )
        return -jnp.mean(log_likelihood - q.kl(vae.prior(p)))

    return jax.jit(jax.grad(negative_elbo))(params)


def _assert_unbiased(samples: np.ndarray, reference: np.ndarray):
    """Each component's mean over keys is within 5 standard errors of the reference."""
    mean = samples.mean(0)
    standard_error = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
    assert np.all(np.abs(mean - reference) <= 5 * standard_error + 1e-6), (
        np.abs(mean - reference) / (standard_error + 1e-12)
    ).max()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "estimator"), [("elbo", "stl"), ("iwae", "dreg")])
def test_an_estimator_leaves_the_value_unchanged(name, estimator):
    """The same loss for every key, up to float32 rounding: XLA may fuse the bound's
    log-sum-exp differently beside DReG's surrogate (a few values differ by one ulp)."""
    plain, _ = _gradients_over_keys(name, "reparameterization", 4, False)
    other, _ = _gradients_over_keys(name, estimator, 4, False)
    np.testing.assert_allclose(plain, other, rtol=3e-7)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["reparameterization", "stl"])
def test_elbo_gradients_are_unbiased_against_the_closed_form(estimator):
    """Mean over keys = the exact gradient of the exact ELBO (not just of each other)."""
    params = posterior_params(linear_gaussian_vae(), exact_posterior=False)
    exact = _exact_elbo_gradient(params)
    _, grads = _gradients_over_keys("elbo", estimator, 1, False)
    for part in ("encoder", "decoder"):
        reference = np.concatenate([np.ravel(g) for g in jax.tree.leaves(exact[part])])
        _assert_unbiased(_flat(grads, part), reference)
    assert np.abs(np.concatenate([np.ravel(g) for g in jax.tree.leaves(exact)])).max() > 0.1


def test_sticking_the_landing_has_zero_variance_at_the_exact_posterior():
    """Roeder et al.: at q = p(z|x), log p(x, z) - log q(z|x) = log p(x) for every z, so
    the STL gradient of the encoder is 0 for every key; the plain one is not."""
    _, stl = _gradients_over_keys("elbo", "stl", 1, True)
    _, plain = _gradients_over_keys("elbo", "reparameterization", 1, True)
    assert np.abs(_flat(stl, "encoder")).max() < 1e-4
    assert _flat(plain, "encoder").std(0).max() > 0.05


@pytest.mark.slow
def test_dreg_decoder_gradient_is_the_iwae_gradient_key_by_key():
    _, dreg = _gradients_over_keys("iwae", "dreg", 16, False)
    _, plain = _gradients_over_keys("iwae", "reparameterization", 16, False)
    np.testing.assert_allclose(_flat(dreg, "decoder"), _flat(plain, "decoder"), atol=2e-5)


@pytest.mark.slow
def test_dreg_encoder_gradient_is_unbiased_with_lower_variance():
    """Tucker et al.: the same mean as the IWAE encoder gradient (paired over keys), and a
    variance that does not grow with K: at K = 16 it is measured several times lower."""
    _, dreg = _gradients_over_keys("iwae", "dreg", 16, False)
    _, plain = _gradients_over_keys("iwae", "reparameterization", 16, False)
    dreg_encoder, plain_encoder = _flat(dreg, "encoder"), _flat(plain, "encoder")
    _assert_unbiased(dreg_encoder - plain_encoder, np.zeros(dreg_encoder.shape[1]))
    assert np.abs(plain_encoder.mean(0)).max() > 0.01  # a gradient worth estimating
    assert dreg_encoder.var(0).sum() < 0.5 * plain_encoder.var(0).sum()


@pytest.mark.slow
def test_an_estimator_trains_the_real_model():
    """Both estimators compile into a train step of the MLP model and give finite
    gradients that differ from the plain ones."""
    vae = vae_jax.vae_from_config(tiny.get_config(), image_shape=(28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (4, 28, 28, 1)).astype(jnp.float32)
    mask = jnp.ones((4,), bool)
    cases = (("elbo", "mc", "stl"), ("iwae", "analytic", "dreg"))
    gradients = {}
    for name, kl, estimator in cases:
        for which in ("reparameterization", estimator):
            objective = objectives.make_objective(
                vae, name=name, num_samples=3, kl=kl, gradient_estimator=which
            )
            gradients[name, which] = jax.grad(
                lambda p, o=objective: o(p, jax.random.key(2), x, mask, 0)[0]
            )
    # all four gradients in one jitted train step
    computed = jax.jit(lambda p: {case: grad(p) for case, grad in gradients.items()})(params)
    for name, _, estimator in cases:
        grads = {which: computed[name, which] for which in ("reparameterization", estimator)}
        leaves = jax.tree.leaves(grads[estimator])
        assert all(np.isfinite(g).all() for g in leaves)
        differ = [
            not np.allclose(a, b)
            for a, b in zip(
                jax.tree.leaves(grads[estimator]["encoder"]),
                jax.tree.leaves(grads["reparameterization"]["encoder"]),
                strict=True,
            )
        ]
        assert any(differ)


def test_an_estimator_outside_its_bound_is_refused():
    vae = linear_gaussian_vae()
    with pytest.raises(ValueError, match="'stl' applies to the elbo objective with kl='mc'"):
        objectives.make_objective(vae, name="elbo", kl="analytic", gradient_estimator="stl")
    with pytest.raises(ValueError, match="'dreg' applies to the iwae objective"):
        objectives.make_objective(vae, name="elbo", gradient_estimator="dreg")
    params, x = posterior_params(vae, exact_posterior=True), _batch()[0]
    with pytest.raises(ValueError, match="stick_the_landing needs kl='mc'"):
        vae.elbo(params, jax.random.key(0), x, stick_the_landing=True)
