"""``vae_jax/objectives.py``: the training objectives, built from keyword arguments as the
config adapter does; masked means (the padded end of the last batch counts in no loss,
metric or gradient); the gradient estimators."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vae_jax
from experiments.configs import tiny
from tests.helpers.linear_gaussian import (
    OBSERVATION_SCALE,
    data,
    linear_gaussian_vae,
    posterior_params,
)
from tests.helpers.tiny import NUM_VALID, _padded_batch, make_objective, tiny_with
from vae_jax import adapter, config_checks, objectives
from vae_jax.errors import ConfigError


@pytest.mark.slow
def test_iwae_objective_is_the_iwae_bound(tiny_config):
    tiny_config.objective.name = "iwae"
    tiny_config.objective.num_samples = 5
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (6, 28, 28, 1)).astype(jnp.float32)
    mask = jnp.array([True] * 5 + [False])
    loss, metrics = jax.jit(adapter.objective_from_config(vae, tiny_config))(
        params, jax.random.key(2), x, mask, jnp.int32(0)
    )
    bound = jax.jit(vae.iwae_bound, static_argnums=3)(params, jax.random.key(2), x, 5)
    np.testing.assert_allclose(-loss, bound[:5].mean(), rtol=1e-6)
    # The bound is above the ELBO (by Jensen, in expectation; here by a margin).
    assert metrics["iwae_bound"] >= metrics["elbo"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [{"name": "iwae", "num_samples": 5}, {"name": "elbo", "num_samples": 5, "kl": "analytic"},
     {"name": "elbo", "num_samples": 5, "kl": "mc"}],
    ids=["iwae", "elbo_analytic_kl", "elbo_monte_carlo_kl"],
)  # fmt: skip
def test_reported_elbo_is_log_likelihood_minus_kl(tiny_config, objective):
    """Each objective's reported numbers add up: elbo = log_likelihood - kl to float32
    rounding. (IWAE reported the Monte Carlo ELBO of its draws beside the analytic KL: off
    by the Monte Carlo KL's error, 1.6 nats here.)"""
    for field, value in objective.items():
        tiny_config.objective[field] = value
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    # A posterior far from the prior (KL 12 nats), where 5 draws estimate the KL poorly.
    head = params["encoder"]["head"]["latent_params"]
    params["encoder"]["head"]["latent_params"] = {**head, "kernel": head["kernel"] * 3.0}
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (6, 28, 28, 1)).astype(jnp.float32)
    mask = jnp.array([True] * 5 + [False])
    objective_fn = jax.jit(adapter.objective_from_config(vae, tiny_config))
    _, metrics = objective_fn(params, jax.random.key(2), x, mask, jnp.int32(0))
    elbo, log_likelihood, kl = (float(metrics[k]) for k in ("elbo", "log_likelihood", "kl"))
    # float32 rounding: a few ulps of the log-likelihood (about -550 nats, 1 ulp = 6e-5).
    np.testing.assert_allclose(elbo, log_likelihood - kl, rtol=0, atol=3e-4)


def test_kl_warmup_rises_linearly_to_beta():
    """beta * min(1, (step + 1) / warmup): beta / warmup at step 0 (not 0, as the docs said
    before), half way at step 4 of 10, full from step 9."""
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(0), beta=2.0, warmup_steps=10), 0.2)
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(9), beta=2.0, warmup_steps=10), 2.0)
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(4), beta=1.0, warmup_steps=10), 0.5)
    np.testing.assert_allclose(objectives.kl_weight(jnp.int32(50), beta=1.0, warmup_steps=10), 1.0)


def test_kl_warmup_in_epochs_is_the_vampprior_codes_set_beta():
    """``set_beta``: ``beta = epoch / warmup``, capped at 1, with epochs from 1, constant
    over an epoch's steps; ours at every step of 250 epochs of 7 steps (fails if counted
    per step, from 0 without the +1, or uncapped)."""
    steps_per_epoch, warmup = 7, 100
    steps = jnp.arange(250 * steps_per_epoch)
    weight = objectives.kl_weight(
        steps, beta=1.0, warmup_steps=0, warmup_epochs=warmup, steps_per_epoch=steps_per_epoch
    )
    epoch = np.arange(250 * steps_per_epoch) // steps_per_epoch + 1
    np.testing.assert_allclose(weight, np.minimum(1.0, epoch / warmup), rtol=1e-6)


@pytest.mark.slow
def test_kl_warmup_in_epochs_reaches_the_objective_through_the_config(tiny_config):
    """The trainer's objective reports ``beta`` = (e + 1) / W in epoch e: the adapter
    passes the epoch's steps (540 images in batches of 50: 11 steps)."""
    tiny_config.objective.kl_warmup_epochs = 4
    vae = vae_jax.vae_from_config(tiny_config, (28, 28, 1))
    objective = adapter.objective_from_config(vae, tiny_config, None, 540)
    params = jax.jit(vae.init)(jax.random.key(0))
    x = jnp.zeros((3, 28, 28, 1))
    mask = jnp.ones((3,), bool)
    betas = [
        float(objective(params, jax.random.key(1), x, mask, jnp.int32(step))[1]["beta"])
        for step in (0, 10, 11, 32, 33, 500)
    ]
    np.testing.assert_allclose(betas, [0.25, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_kl_warmup_in_epochs_and_in_steps_together_are_refused(tiny_config):
    tiny_config.objective.kl_warmup_epochs = 4
    tiny_config.objective.kl_warmup_steps = 10
    with pytest.raises(ConfigError, match=r"kl_warmup_steps=10 and objective\.kl_warmup_epochs=4"):
        config_checks.check_config(tiny_config)


# --- Masked means: padding counts in no loss, metric or gradient. ---


def _valid_mean(values) -> float:
    return float(np.mean(np.asarray(values, np.float64)[:NUM_VALID]))


def _loss_and_metrics(vae, params, objective_config, key, step):
    """The objective's loss and metrics on a padded batch, after checking that replacing the
    padded images leaves the loss, every metric and the gradient as they were."""
    objective_fn = jax.jit(jax.value_and_grad(make_objective(vae, objective_config), has_aux=True))
    results = []
    for padding_probability in (0.95, 0.02):
        x, mask = _padded_batch(padding_probability)
        (loss, metrics), grads = objective_fn(params, key, x, mask, jnp.int32(step))
        results.append((float(loss), {k: float(v) for k, v in metrics.items()}, grads))
    (loss, metrics, grads), (loss_other, metrics_other, grads_other) = results
    np.testing.assert_allclose(loss_other, loss, rtol=1e-6)
    for name in metrics:
        np.testing.assert_allclose(metrics_other[name], metrics[name], rtol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_other), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    return loss, metrics


@pytest.mark.slow
def test_elbo_objective_averages_over_unmasked_examples_only(tiny_model):
    """objective.py: "The loss is averaged over the examples where mask is True"; beta is
    beta * min(1, (t + 1) / kl_warmup_steps). Padded images change nothing."""
    vae, params, elbo = tiny_model
    config = tiny_with(
        **{"objective.num_samples": 2, "objective.beta": 0.5, "objective.kl_warmup_steps": 10}
    )
    key, step = jax.random.key(2), 4
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, step)
    x, _ = _padded_batch(0.95)
    out = elbo(params, key, x, num_samples=2)  # the objective's draws
    beta = 0.5 * min(1.0, (step + 1) / 10)
    log_likelihood, kl = _valid_mean(out.log_likelihood), _valid_mean(out.kl)
    expected = {
        "loss": -(log_likelihood - beta * kl),
        "elbo": _valid_mean(out.elbo),
        "log_likelihood": log_likelihood,
        "kl": kl,
        "beta": beta,
    }
    assert set(metrics) == set(expected)
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-5)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)
    # The padded examples would have moved the means: the check above can tell.
    assert abs(float(np.mean(out.kl)) - kl) > 1e-3 * abs(kl)


@pytest.mark.slow
@pytest.mark.parametrize("num_valid", [1, 0], ids=["one_example", "all_padding"])
def test_a_batch_of_one_example_or_none_is_averaged_over_what_it_holds(tiny_model, num_valid):
    """A last batch may hold a single example: the loss is that example's; a batch of padding
    only contributes a loss of 0, not NaN."""
    vae, params, elbo = tiny_model
    key = jax.random.key(2)
    x, _ = _padded_batch(0.95)
    mask = jnp.arange(len(x)) < num_valid
    objective_fn = jax.jit(make_objective(vae, tiny_with().objective))
    loss, metrics = objective_fn(params, key, x, mask, jnp.int32(0))
    expected = -float(elbo(params, key, x).elbo[0]) if num_valid else 0.0
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["elbo"]), -expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_monte_carlo_kl_without_free_bits_is_not_clamped(tiny_model):
    """With kl="mc" a dimension's KL estimate can be negative; free_bits = 0 (off) must leave
    it as it is, so the loss is exactly -(log-likelihood - KL), both averaged over examples."""
    vae, params, elbo = tiny_model
    key = jax.random.key(2)
    config = tiny_with(**{"objective.kl": "mc"})
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, 0)
    x, _ = _padded_batch(0.95)
    out = elbo(params, key, x, kl="mc")
    kl_per_dim = np.asarray(out.kl_per_dim, np.float64)[:NUM_VALID].mean(0)
    assert np.any(kl_per_dim < -1e-3)  # a clamp at 0 would change the loss
    expected = -(_valid_mean(out.log_likelihood) - _valid_mean(out.kl))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], _valid_mean(out.kl), rtol=1e-5)


def test_free_bits_average_each_dimension_over_unmasked_examples_only(tiny_model):
    """Free bits: each latent dimension's KL, averaged over the unmasked examples, is only
    penalized above ``free_bits`` nats."""
    vae, params, elbo = tiny_model
    key = jax.random.key(2)
    x, _ = _padded_batch(0.95)
    out = elbo(params, key, x)
    kl_per_dim = np.asarray(out.kl_per_dim, np.float64)[:NUM_VALID].mean(0)
    # A threshold between the two smallest dimensions: one is clamped, the others are not.
    low, second = np.sort(kl_per_dim)[:2]
    assert second > low * 1.01
    free_bits = float((low + second) / 2)
    config = tiny_with(**{"objective.free_bits": free_bits})
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, 0)
    penalty = np.maximum(kl_per_dim, free_bits).sum()
    np.testing.assert_allclose(loss, -(_valid_mean(out.log_likelihood) - penalty), rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], _valid_mean(out.kl), rtol=1e-5)
    # Averaged over every row, padding included, the penalty would differ.
    with_padding = np.maximum(np.asarray(out.kl_per_dim, np.float64).mean(0), free_bits).sum()
    assert abs(with_padding - penalty) > 1e-3 * penalty


@pytest.mark.slow
def test_iwae_objective_and_metrics_average_over_unmasked_examples_only(tiny_model):
    """IWAE-k: the loss is minus the bound averaged over unmasked examples; the reported ELBO
    terms are the log-likelihood of the same K draws and the analytic KL, and the ELBO is
    their difference (as the elbo objective reports them with K draws)."""
    vae, params, elbo = tiny_model
    num_samples = 4
    config = tiny_with(**{"objective.name": "iwae", "objective.num_samples": num_samples})
    key = jax.random.key(2)
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, 0)
    x, _ = _padded_batch(0.95)
    bound = jax.jit(vae.iwae_bound, static_argnums=3)(params, key, x, num_samples)
    same_draws = elbo(params, key, x, num_samples=num_samples)  # analytic KL
    expected = {
        "loss": -_valid_mean(bound),
        "iwae_bound": _valid_mean(bound),
        "elbo": _valid_mean(same_draws.elbo),
        "log_likelihood": _valid_mean(same_draws.log_likelihood),
        "kl": _valid_mean(same_draws.kl),
        "beta": 1.0,
    }
    assert set(metrics) == set(expected)
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-5)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)


# --- Gradient estimators (objective.gradient_estimator): each changes the gradient, never
# the value; each is unbiased for the gradient of its bound; each has lower variance where
# its paper says so. Checked on the linear Gaussian VAE, whose ELBO has a closed form. ---

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
