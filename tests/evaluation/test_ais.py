"""Annealed importance sampling and BDMC against exact answers: the linear Gaussian VAE's
log p(x), a two-layer model's log p(x) by quadrature, a Gaussian target's moments and
normalizer, the documented keys, and the evaluate command's report."""

from __future__ import annotations

import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import vae_jax
from tests.helpers import two_layer
from tests.helpers.linear_gaussian import (
    OBSERVATION_SCALE,
    B,
    W,
    data,
    linear_gaussian_vae,
    posterior_params,
)
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import ais, vae_ais
from vae_jax.evaluation.evaluate_run import evaluate_run

fold_in = jax.random.fold_in
KEY_IDS = {"initial": 0, "momentum": 1, "accept": 2}  # written out: a renumbering is caught
BDMC_KEY_IDS = {"latent": 0, "observation": 1, "forward": 2, "reverse": 3}
AIS_PURPOSE_ID = 6  # fold_in(eval_stream, 6): the test images' AIS keys


def _options(num_steps, num_chains=4, leapfrog=5, initial_step_size=0.1):
    """AIS with a step size that starts near the linear Gaussian posterior's scales (0.33
    and 0.22): Wu et al.'s 0.01 needs hundreds of transitions to grow to them."""
    hmc = ais.HMCSettings(num_leapfrog_steps=leapfrog, initial_step_size=initial_step_size)
    return vae_ais.AISOptions(num_steps=num_steps, num_chains=num_chains, hmc=hmc)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _log_likelihoods(vae, params, key, x, options):
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, x: vae_ais.log_likelihood(vae, params, k, x, options))(keys, x)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _bdmc(vae, params, key, num, options):
    return jax.vmap(lambda k: vae_ais.bdmc(vae, params, k, options))(jax.random.split(key, num))


def _exact_log_px(x) -> np.ndarray:
    """log p(x) of the linear Gaussian VAE by scipy: x ~ N(b, W W^T + s^2 I)."""
    cov = W @ W.T + OBSERVATION_SCALE**2 * np.eye(4)
    return stats.multivariate_normal(B, cov).logpdf(np.asarray(x, np.float64).reshape(-1, 4))


@pytest.mark.slow
def test_ais_converges_to_the_exact_log_likelihood_as_the_steps_grow():
    """From a deliberately poor q(z|x), over 300 examples, AIS's root-mean-square error
    against the exact log p(x) falls as T grows (T = 1 is importance sampling with 4
    draws); at T = 1000 it is below 0.1 nats and the mean error within 0.015 nats and not
    above the exact value beyond its noise, where importance sampling is 0.1 nats below."""
    vae = linear_gaussian_vae()
    params = posterior_params(vae, exact_posterior=False)
    x, exact = data(num=300)
    bias, rms = {}, {}
    for steps in (1, 10, 1000):
        found = _log_likelihoods(vae, params, jax.random.key(1), x, _options(steps))
        difference = exact - np.asarray(found.log_normalizer, np.float64)
        bias[steps] = (difference.mean(), difference.std(ddof=1) / np.sqrt(difference.size))
        rms[steps] = np.sqrt(np.mean(difference**2))
    assert rms[1] > 2 * rms[10] > 4 * rms[1000], rms
    assert rms[1000] < 0.1, rms
    assert bias[1][0] > 0.1, bias  # a loose proposal: importance sampling is far below
    assert abs(bias[1000][0]) < 0.015, bias
    assert bias[1000][0] > -3 * bias[1000][1], bias


@pytest.mark.slow
def test_bdmc_brackets_the_exact_log_likelihood_on_simulated_data():
    """On 256 examples simulated from the model, one chain each: with T = 3, forward AIS
    is below the exact log p(x) and reverse AIS from the simulating z above it, each by
    more than 3 standard errors; with T = 300 neither is on the wrong side by 2 standard
    errors, and the bracket is narrower than 0.2 nats and a quarter of T = 3's."""
    vae = linear_gaussian_vae()
    params = posterior_params(vae, exact_posterior=False)
    gaps = {}
    for steps in (3, 300):
        found = _bdmc(vae, params, jax.random.key(2), 256, _options(steps, num_chains=1))
        exact = _exact_log_px(found.x)
        lower = np.asarray(found.lower.log_normalizer, np.float64) - exact
        upper = np.asarray(found.upper.log_normalizer, np.float64) - exact
        errors = [a.std(ddof=1) / np.sqrt(a.size) for a in (lower, upper)]
        margin = 3 if steps == 3 else -2  # T = 3: well apart; T = 300: not on the wrong side
        assert lower.mean() < -margin * errors[0], (steps, lower.mean(), errors)
        assert upper.mean() > margin * errors[1], (steps, upper.mean(), errors)
        gaps[steps] = (upper - lower).mean()
    assert gaps[300] < min(0.2, gaps[3] / 4), gaps


@functools.partial(jax.jit, static_argnums=(0, 3))
def _two_layer_ais(vae, params, key, options):
    images = two_layer.ALL_IMAGES
    return _log_likelihoods(vae, params, key, images, options).log_normalizer


@pytest.mark.slow
@pytest.mark.parametrize(
    ("inference", "initial", "num_chains"),
    [("bottom_up", "prior", 8), ("top_down", "posterior", 64)],
)
def test_ais_agrees_with_quadrature_on_a_two_layer_model(inference, initial, num_chains):
    """Two stochastic layers on two pixels with random parameters (z = (z1, z2), annealed
    whole): AIS from the prior or from q(z|x) gives log p(x) of each of the four images
    within 0.03 nats of quadrature over (z1, z2). (This model's q(z1|x) is 3 to 8 times
    wider than the prior, so AIS from it needs more chains.)"""
    vae, params = two_layer._tiny(inference)
    exact = two_layer._brute_force_log_px(vae, params)
    options = vae_ais.AISOptions(
        num_steps=200, num_chains=num_chains, initial=initial,
        hmc=ais.HMCSettings(num_leapfrog_steps=5, initial_step_size=0.1),
    )  # fmt: skip
    found = np.asarray(_two_layer_ais(vae, params, jax.random.key(3), options), np.float64)
    np.testing.assert_allclose(found, exact, atol=0.03)


# A correlated Gaussian target and the standard normal initial density, in 2-d.
TARGET_MEAN = np.array([1.0, -0.5])
TARGET_COV = np.array([[0.5, 0.2], [0.2, 0.3]])
LOG_Z = 1.5  # log of the target's normalizer


def _log_initial(z):
    return -0.5 * jnp.sum(z**2) - jnp.log(2 * jnp.pi)


def _log_target(z):
    """``LOG_Z + log N(z; TARGET_MEAN, TARGET_COV)``."""
    precision = jnp.asarray(np.linalg.inv(TARGET_COV), jnp.float32)
    d = z - jnp.asarray(TARGET_MEAN, jnp.float32)
    log_det = np.log(np.linalg.det(TARGET_COV))
    return LOG_Z - 0.5 * d @ precision @ d - 0.5 * log_det - jnp.log(2 * jnp.pi)


def _intermediate_gaussian(beta):
    """Mean and covariance of f_beta = N(0, I)^(1 - beta) N(m, S)^beta, normalized."""
    target_precision = np.linalg.inv(TARGET_COV)
    precision = (1 - beta) * np.eye(2) + beta * target_precision
    cov = np.linalg.inv(precision)
    return cov @ (beta * target_precision @ TARGET_MEAN), cov


@functools.partial(jax.jit, static_argnums=(3, 4))
def _hmc_chains(z, key, beta, num_transitions, num_leapfrog_steps):
    states = jax.vmap(lambda z: ais.chain_state(z, _log_initial, _log_target))(z)
    ids = jnp.arange(z.shape[0])

    def body(carry, j):
        states, accepted = carry
        keys = jax.vmap(lambda c: fold_in(fold_in(key, j), c))(ids)
        step = jax.vmap(
            lambda s, k: ais.hmc_transition(
                s, jax.random.split(k)[0], jax.random.split(k)[1], beta=beta, step_size=0.6,
                num_leapfrog_steps=num_leapfrog_steps,
                log_initial=_log_initial, log_target=_log_target,
            )
        )  # fmt: skip
        states, accept = step(states, keys)
        return (states, accepted + accept.sum()), None

    (states, accepted), _ = jax.lax.scan(body, (states, 0), jnp.arange(num_transitions))
    return states.z, accepted / (num_transitions * z.shape[0])


def test_hmc_transitions_leave_their_target_invariant():
    """8000 chains started from the exact intermediate Gaussian f_0.6 keep its mean and
    covariance after 20 transitions (step 0.6, 3 leapfrog steps: large enough that the
    Metropolis test rejects a fair share), within 4 standard errors."""
    beta, num = 0.6, 8000
    mean, cov = _intermediate_gaussian(beta)
    start = np.random.default_rng(0).multivariate_normal(mean, cov, size=num)
    z, acceptance = _hmc_chains(jnp.asarray(start, jnp.float32), jax.random.key(4), beta, 20, 3)
    z = np.asarray(z, np.float64)
    assert 0.3 < float(acceptance) < 0.97, acceptance
    assert np.abs(z - start).mean() > 0.3  # the chains moved
    mean_error = np.sqrt(np.diag(cov) / num)
    np.testing.assert_array_less(np.abs(z.mean(0) - mean), 4 * mean_error)
    found_cov = np.cov(z.T)
    cov_error = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / num)
    np.testing.assert_array_less(np.abs(found_cov - cov), 4 * cov_error)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _forward_weights(keys, num_chains, hmc):
    run = lambda k: ais.ais(
        k, sample_initial=lambda kk: jax.random.normal(kk, (2,)), log_initial=_log_initial,
        log_target=_log_target, num_steps=10, num_chains=num_chains, hmc=hmc,
    )  # fmt: skip
    return jax.vmap(run)(keys)


@functools.partial(jax.jit, static_argnums=2)
def _reverse_weights(keys, exact, hmc):
    run = lambda k, z: ais.reverse_ais(
        k, z, log_initial=_log_initial, log_target=_log_target, num_steps=10, num_chains=2,
        hmc=hmc,
    )  # fmt: skip
    return jax.vmap(run)(keys, exact)


def _relative_mean_and_error(log_w: np.ndarray, reference: float):
    w = np.exp(np.asarray(log_w, np.float64).ravel() - reference)
    return w.mean() - 1, w.std(ddof=1) / np.sqrt(w.size)


@pytest.mark.slow
@pytest.mark.parametrize("adapt", [False, True], ids=["fixed_step", "adapted_step"])
def test_ais_weights_are_unbiased_for_the_normalizer(adapt):
    """Over 4000 keys of 4 chains, the mean of exp(log w) is Z (within 4 standard errors
    and 3%), while log of it averaged per key is below log Z (a lower bound); reverse AIS
    from exact draws of the target has weights whose mean is 1 / Z."""
    hmc = ais.HMCSettings(num_leapfrog_steps=3, initial_step_size=0.3, adapt_step_size=adapt)
    keys = jax.random.split(jax.random.key(5), 4000)
    forward = _forward_weights(keys, 4, hmc)
    error, standard_error = _relative_mean_and_error(forward.log_weights, LOG_Z)
    assert abs(error) < max(4 * standard_error, 1e-3), (error, standard_error)
    assert abs(error) < 0.03, (error, standard_error)
    assert np.mean(forward.log_weights) < LOG_Z
    exact = np.random.default_rng(1).multivariate_normal(TARGET_MEAN, TARGET_COV, size=4000)
    reverse = _reverse_weights(keys, jnp.asarray(exact, jnp.float32), hmc)
    error, standard_error = _relative_mean_and_error(reverse.log_weights, -LOG_Z)
    assert abs(error) < max(4 * standard_error, 1e-3), (error, standard_error)
    assert abs(error) < 0.03, (error, standard_error)
    assert np.mean(-reverse.log_weights) > LOG_Z  # reverse AIS bounds log Z from above


@functools.partial(jax.jit, static_argnums=(0, 4))
def _one_example(vae, params, key, x, options):
    return vae_ais.log_likelihood(vae, params, key, x, options)


def _reference_transition(z, momentum, u, beta, step_size, vae, params, x):
    """One HMC transition with one leapfrog step written out in float64 numpy from
    independently computed densities: scipy's q(z|x) and prior, the decoder's log p(x|z)."""
    q = vae.encode(params, x)
    loc, scale = np.asarray(q.loc, np.float64), np.exp(np.asarray(q.log_scale, np.float64))

    def log_f(z):
        log_q = stats.norm.logpdf(z, loc, scale).sum()
        log_joint = float(vae.decode(params, jnp.asarray(z, jnp.float32)[None]).log_prob(x)[0])
        log_joint += stats.norm.logpdf(z).sum()
        return log_q + beta * (log_joint - log_q), log_joint - log_q

    def grad_log_f(z):
        g_q = -(z - loc) / scale**2
        g_joint = (
            np.asarray(
                jax.grad(lambda z: vae.decode(params, z[None]).log_prob(x)[0])(
                    jnp.asarray(z, jnp.float32)
                ),
                np.float64,
            )
            - z
        )
        return g_q + beta * (g_joint - g_q)

    p_half = momentum + 0.5 * step_size * grad_log_f(z)
    proposal = z + step_size * p_half
    p_new = p_half + 0.5 * step_size * grad_log_f(proposal)
    energy = -log_f(z)[0] + 0.5 * momentum @ momentum
    energy_new = -log_f(proposal)[0] + 0.5 * p_new @ p_new
    accepted = np.log(u) < energy - energy_new
    return (proposal if accepted else z), log_f


@pytest.mark.slow
def test_each_documented_key_stream_is_what_is_drawn():
    """With T = 1, chain c's weight is log p(x, z_c) - log q(z_c|x) at z_c drawn from
    fold_in(fold_in(k, 0), c): the IWAE bound at key fold_in(k, 0) with K = chains. With
    T = 2, chain c's one transition uses the momentum normal(fold_in(fold_in(fold_in(k, 1),
    1), c)) and the accept test uniform(fold_in(fold_in(fold_in(k, 2), 1), c)): an HMC step
    written out in numpy with those draws gives its final state and weight; the same with
    transition id 0 or the next chain's keys gives other states. Run in groups of 2 chains,
    every chain draws the same."""
    vae = linear_gaussian_vae()
    params = posterior_params(vae, exact_posterior=False)
    x = data(num=1)[0][0]
    key = jax.random.key(6)
    one_step = _one_example(vae, params, key, x, _options(1, num_chains=5))
    bound = vae.iwae_bound(params, fold_in(key, KEY_IDS["initial"]), x, num_samples=5)
    np.testing.assert_allclose(one_step.log_normalizer, bound, rtol=1e-5, atol=1e-5)

    options = vae_ais.AISOptions(
        num_steps=2, num_chains=5,
        hmc=ais.HMCSettings(num_leapfrog_steps=1, initial_step_size=0.15, adapt_step_size=False),
    )  # fmt: skip
    found = _one_example(vae, params, key, x, options)
    betas = ais.sigmoidal_schedule(2).astype(np.float64)
    q = vae.encode(params, x)
    moved = 0
    for c in range(5):
        z0 = np.asarray(q.sample(fold_in(fold_in(key, KEY_IDS["initial"]), c)), np.float64)

        def transition(transition_id, chain, z0=z0):
            momentum = jax.random.normal(fold_in(fold_in(fold_in(key, 1), transition_id), chain),
                                         (2,))  # fmt: skip
            u = jax.random.uniform(fold_in(fold_in(fold_in(key, 2), transition_id), chain))
            return _reference_transition(z0, np.asarray(momentum, np.float64), float(u),
                                         betas[1], 0.15, vae, params, x)  # fmt: skip

        z1, log_f = transition(1, c)
        np.testing.assert_allclose(found.final_z[c], z1, rtol=1e-4, atol=1e-5)
        weight = (betas[1] - betas[0]) * log_f(z0)[1] + (betas[2] - betas[1]) * log_f(z1)[1]
        np.testing.assert_allclose(found.log_weights[c], weight, rtol=1e-4, atol=1e-4)
        moved += not np.allclose(z1, z0)
        for neighbour in (transition(0, c)[0], transition(1, c + 1)[0]):
            assert not np.allclose(neighbour, z1) or np.allclose(z1, z0)
    assert moved >= 3  # the transitions were accepted, so the keys were tested
    # Chains in groups of 2 (the last one padded): the same keys per chain, so the same
    # chains (the step size is fixed here; adapted, it is each group's own).
    grouped = _one_example(vae, params, key, x, options._replace(chain_chunk_size=2))
    np.testing.assert_allclose(grouped.log_weights, found.log_weights, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grouped.final_z, found.final_z, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_evaluate_with_ais_and_bdmc_reports_both_from_the_documented_keys(tiny_run, tmp_path):
    """``evaluate_run(estimator="ais", bdmc=True)`` on the tiny run: report.json's AIS NLL
    is the mean over the first test images of AIS with keys fold_in(fold_in(eval, 6), i),
    the IWAE bound beside it is the run's (test_iwae keys, its K) on the same images,
    report.md shows both and the BDMC bracket; a bad flag fails in one line before any
    work, leaving report.json as it was."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run.workdir, copy)
    before = (copy / "report.json").read_bytes()
    with pytest.raises(ConfigError, match=r"--ais_num_steps=0 must be >= 1"):
        evaluate_run(copy, estimator="ais", ais_overrides={"ais_num_steps": 0})
    assert (copy / "report.json").read_bytes() == before
    overrides = {"ais_num_steps": 3, "ais_num_chains": 2, "ais_leapfrog_steps": 2,
                 "ais_num_examples": 4, "bdmc_num_examples": 3}  # fmt: skip
    result = evaluate_run(copy, estimator="ais", bdmc=True, ais_overrides=overrides,
                          make_figures=False)  # fmt: skip
    report = json.loads((copy / "report.json").read_text())["evaluation"]
    found = report["ais"]
    assert found["num_examples"] == 4
    assert found["options"]["num_steps"] == 3
    vae, params, config = vae_jax.load_run(copy)
    dataset = load_dataset(config)
    x = dataset.preprocessing.eval_input(dataset.test.images[:4])
    eval_stream = fold_in(jax.random.key(config.seed), 4)
    options = vae_ais.AISOptions(num_steps=3, num_chains=2, chain_chunk_size=16,
                                 hmc=ais.HMCSettings(num_leapfrog_steps=2))  # fmt: skip
    expected = [
        _one_example(vae, params, fold_in(fold_in(eval_stream, AIS_PURPOSE_ID), i), x[i],
                     options).log_normalizer
        for i in range(4)
    ]  # fmt: skip
    np.testing.assert_allclose(found["nll_nats"], -np.mean(expected), rtol=1e-5)
    # bits per dimension of the AIS NLL: nats over the image's pixels and ln 2 (binary data)
    pixels = int(np.prod(vae.image_shape))
    assert found["bits_per_dim"] == pytest.approx(found["nll_nats"] / (pixels * np.log(2)))
    wrong = _one_example(vae, params, fold_in(fold_in(eval_stream, 2), 0), x[0], options)
    assert not np.isclose(wrong.log_normalizer, expected[0])
    bound = jax.jit(vae.iwae_bound, static_argnums=3)
    k = config.evaluation.num_importance_samples
    iwae = [bound(params, fold_in(fold_in(eval_stream, 2), i), x[i], k) for i in range(4)]
    np.testing.assert_allclose(found["iwae_same_examples"]["nll_nats"], -np.mean(iwae), rtol=1e-5)
    np.testing.assert_allclose(
        found["iwae_minus_ais_nats"]["mean"], np.mean(expected) - np.mean(iwae), atol=1e-4
    )
    bdmc = report["bdmc"]
    assert bdmc["num_examples"] == 3
    assert bdmc["upper_log_px"]["mean"] > bdmc["lower_log_px"]["mean"]
    markdown = (copy / "report.md").read_text()
    assert "| test NLL, AIS T=3, 2 chains (nats) |" in markdown
    assert "BDMC, 3 simulated examples" in markdown
    assert result["ais"] == found


def test_ais_from_a_flow_posterior_is_refused_in_one_line_and_runs_from_the_prior():
    """A flow's density is known at its own draws only (the contract's density_everywhere):
    annealing from q(z|x) is refused before any work; from the prior it runs."""
    vae = vae_jax.make_vae(image_shape=(2, 2, 1), latent_dim=2, hidden_sizes=(4,), posterior="iaf")
    params = jax.eval_shape(vae.init, jax.random.key(0))  # shapes only: nothing compiles
    x = jnp.ones((2, 2, 1))

    def from_(initial, params, key):
        sample, log_prob = vae_ais.initial_distribution(vae, params, x, initial)
        return log_prob(sample(key))

    with pytest.raises(ValueError, match=r"needs its density at any z.*--ais_initial=prior"):
        jax.eval_shape(functools.partial(from_, "posterior"), params, jax.random.key(1))
    assert jax.eval_shape(functools.partial(from_, "prior"), params, jax.random.key(1)).shape == ()
