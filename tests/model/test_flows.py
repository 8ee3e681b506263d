"""Inverse autoregressive flow posteriors (model.posterior="iaf"): MADE's autoregressive
structure and the log-determinant against jax.jacfwd, log q by the change of variables
against scipy, and the bounds built from the flow's own draws."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.helpers.small_images import images_for
from vae_jax import config_checks, model, objectives
from vae_jax.core import networks
from vae_jax.errors import ConfigError
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.model import flows
from vae_jax.single_run import train_and_evaluate

IMAGE_SHAPE = (4, 4, 1)
LATENT_DIM = 3
HIDDEN = 8


@functools.cache
def _vae(likelihood="bernoulli", prior="standard_normal", flow_steps=2):
    return model.make_vae(
        image_shape=IMAGE_SHAPE,
        latent_dim=LATENT_DIM,
        likelihood=likelihood,
        hidden_sizes=(8,),
        prior=prior,
        posterior="iaf",
        flow_steps=flow_steps,
        flow_hidden_size=HIDDEN,
    )


def _images(likelihood="bernoulli", n=4):
    return images_for(likelihood, n, IMAGE_SHAPE)


def _perturbed(params, key, scale=0.5):
    """Parameters moved off their initialization (zero biases hide mistakes)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    moved = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, moved)


@functools.cache
def _moved_params():
    """The default IAF model's parameters moved off their initialization (shared by the
    tests that read them; none changes them)."""
    return _perturbed(jax.jit(_vae().init)(jax.random.key(0)), jax.random.key(1), 0.3)


@pytest.mark.slow
@pytest.mark.parametrize("reverse", [False, True])
def test_made_output_d_depends_only_on_the_coordinates_before_d(reverse):
    dim = 5
    made = flows.MADE(dim, 16, reverse=reverse)
    z, context = jax.random.normal(jax.random.key(0), (dim,)), jnp.ones((4,))
    params = _perturbed(made.init(jax.random.key(1), z, context)["params"], jax.random.key(2))
    jacobians = jax.jit(jax.jacfwd(lambda z: made.apply({"params": params}, z, context)))(z)
    order = np.arange(dim)[::-1] if reverse else np.arange(dim)  # position of each coordinate
    allowed = order[None, :] < order[:, None]  # output d may see input e iff e comes first
    for jacobian in jacobians:  # m and s
        jacobian = np.asarray(jacobian)
        assert np.all(jacobian[~allowed] == 0.0)
        assert np.all(np.abs(jacobian[allowed]) > 0.0)  # and it does see every one of them


@pytest.mark.slow
def test_iaf_log_det_matches_the_autodiff_jacobian():
    flow = flows.IAF(LATENT_DIM, num_steps=3, hidden_size=HIDDEN)
    z = jax.random.normal(jax.random.key(0), (5, LATENT_DIM))
    context = jax.random.normal(jax.random.key(1), (5, HIDDEN))
    params = _perturbed(flow.init(jax.random.key(2), z, context)["params"], jax.random.key(3))
    _, log_det = jax.jit(flow.apply)({"params": params}, z, context)
    jacobians = jax.jit(jax.vmap(jax.jacfwd(lambda v, c: flow.apply({"params": params}, v, c)[0])))(
        z, context
    )
    signs, reference = np.linalg.slogdet(np.asarray(jacobians, np.float64))
    assert np.all(signs == 1.0)
    np.testing.assert_allclose(log_det, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_iaf_log_q_is_the_change_of_variables_of_the_base_density():
    vae, params = _vae(), _moved_params()
    x, key = _images(), jax.random.key(5)

    @jax.jit
    def encoded_and_drawn(params):
        q = vae.encode(params, x)
        return q, q.sample_and_log_prob(key)

    q, (z, log_q) = encoded_and_drawn(params)
    # Documented: eps ~ N(0, I) from the key as the Gaussian draws it, z_0 = mu + sigma eps.
    loc, scale = np.asarray(q.base.loc, np.float64), np.exp(np.asarray(q.base.log_scale))
    z0 = loc + scale * np.asarray(jax.random.normal(key, loc.shape), np.float64)

    @jax.jit
    def flow_and_jacobian(q, z0):
        def flow_of(v, context):
            return q.apply_flow(q.flow_params, v, context)[0]

        return flow_of(z0, q.context), jax.vmap(jax.jacfwd(flow_of))(z0, q.context)

    flowed, jacobians = flow_and_jacobian(q, jnp.asarray(z0, jnp.float32))
    np.testing.assert_allclose(z, flowed, rtol=1e-5)
    reference = stats.norm.logpdf(z0, loc, scale).sum(-1)
    reference -= np.linalg.slogdet(np.asarray(jacobians, np.float64))[1]
    np.testing.assert_allclose(log_q, reference, rtol=1e-5, atol=1e-4)
    with pytest.raises(NotImplementedError, match="known at its own draws only"):
        q.log_prob(z)


@pytest.mark.slow
def test_iaf_bounds_are_built_from_the_draws_and_their_log_density():
    vae, params = _vae(), _moved_params()
    x, key = _images(), jax.random.key(6)

    @jax.jit
    def computed(params):
        return (
            vae.elbo(params, key, x, num_samples=3, kl="mc"),
            vae.iwae_bound(params, key, x, num_samples=6, chunk_size=4),
        )

    @jax.jit
    def draws(params):  # draw s with fold_in(key, s), as for the Gaussian
        q = vae.encode(params, x)
        z, log_q = jax.vmap(lambda s: q.sample_and_log_prob(jax.random.fold_in(key, s)))(
            jnp.arange(6)
        )
        return z, log_q, vae.decode(params, z).log_prob(x)

    elbo, bound = computed(params)
    z, log_q, log_likelihood = (np.asarray(a, np.float64) for a in draws(params))
    log_p = stats.norm.logpdf(z).sum(-1)
    np.testing.assert_allclose(elbo.kl, (log_q - log_p)[:3].mean(0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(elbo.log_likelihood, log_likelihood[:3].mean(0), rtol=1e-5)
    np.testing.assert_allclose(elbo.kl_per_dim.sum(-1), elbo.kl, rtol=1e-5, atol=1e-5)
    log_w = log_likelihood + log_p - log_q
    reference = special.logsumexp(log_w, axis=0) - np.log(6)
    np.testing.assert_allclose(bound, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("likelihood", "prior", "name"),
    [  # each likelihood once, both objectives, with the standard normal and a learned prior
        ("bernoulli", "standard_normal", "elbo"),
        ("continuous_bernoulli", "mixture", "iwae"),
        ("gaussian", "standard_normal", "iwae"),
        ("discretized_logistic", "mixture", "elbo"),
    ],
)
def test_iaf_trains_with_every_likelihood_and_both_objectives(likelihood, prior, name):
    vae = _vae(likelihood, prior)
    params = jax.jit(vae.init)(jax.random.key(0))
    objective = objectives.make_objective(vae, name=name, num_samples=3, kl="mc")
    mask = jnp.array([True, True, True, False])
    (loss, metrics), grads = jax.jit(jax.value_and_grad(objective, has_aux=True))(
        params, jax.random.key(1), _images(likelihood), mask, jnp.int32(0)
    )
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(
        metrics["elbo"], metrics["log_likelihood"] - metrics["kl"], rtol=1e-5, atol=1e-4
    )
    for part in (grads["flow"], grads["encoder"]["head"]["context"]):
        leaves = jax.tree.leaves(part)
        assert all(np.all(np.isfinite(g)) for g in leaves)
        assert any(np.abs(np.asarray(g)).max() > 0 for g in leaves)


@pytest.mark.slow
@pytest.mark.parametrize(("prior", "parts"), [("standard_normal", 3), ("mixture", 4)])
def test_the_flow_is_initialized_from_the_last_part_of_the_init_key(prior, parts):
    """init splits its key in the order encoder, decoder, learned prior, flow."""
    key = jax.random.key(11)
    params = jax.jit(_vae("bernoulli", prior).init)(key)
    keys = jax.random.split(key, parts)
    flow = flows.IAF(LATENT_DIM, num_steps=2, hidden_size=HIDDEN)
    z, context = jnp.zeros((1, LATENT_DIM)), jnp.zeros((1, HIDDEN))
    expected = flow.init(keys[-1], z, context)["params"]
    for a, b in zip(jax.tree.leaves(params["flow"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)
    encoder = networks.MLPEncoder((8,), LATENT_DIM, context_dim=HIDDEN)
    expected = encoder.init(keys[0], jnp.zeros((1, *IMAGE_SHAPE)))["params"]
    for a, b in zip(jax.tree.leaves(params["encoder"]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, r"^objective\.kl='analytic' has no closed form for model\.posterior='iaf'"),
        (
            {"objective.kl": "mc", "objective.gradient_estimator": "stl"},
            r"^objective\.gradient_estimator='stl' needs q's density at any z",
        ),
        (
            {"objective.name": "iwae", "objective.gradient_estimator": "dreg"},
            r"^objective\.gradient_estimator='dreg' needs q's density at any z",
        ),
        (
            {"objective.kl": "mc", "model.prior": "vampprior"},
            r"^model\.posterior='iaf' does not combine with model\.prior='vampprior'",
        ),
        (
            {"objective.kl": "mc", "objective.free_bits": 0.5},
            r"^objective\.free_bits=0\.5 needs a KL per latent dimension",
        ),
    ],
)
def test_what_needs_the_flows_density_elsewhere_is_refused_in_one_line(
    tiny_config, overrides, message
):
    tiny_config.model.posterior = "iaf"
    for dotted, value in overrides.items():
        group, field = dotted.split(".")
        tiny_config[group][field] = value
    with pytest.raises(ConfigError, match=message) as error:
        config_checks.check_config(tiny_config)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_the_core_refuses_the_same_without_a_config():
    with pytest.raises(ValueError, match="'vampprior' needs q's density at any z"):
        model.make_vae(image_shape=IMAGE_SHAPE, latent_dim=2, prior="vampprior", posterior="iaf")
    vae = _vae()
    with pytest.raises(ValueError, match="'dreg' needs q's density at any z"):
        objectives.make_objective(vae, name="iwae", gradient_estimator="dreg")
    params = jax.jit(vae.init)(jax.random.key(0))
    with pytest.raises(ValueError, match="kl='analytic' has no closed form"):
        vae.elbo(params, jax.random.key(1), _images(), kl="analytic")
    assert model.evaluation_kl(vae) == "mc"


@pytest.mark.slow
def test_an_iaf_run_with_a_learned_prior_trains_and_evaluates_end_to_end(tiny_config, tmp_path):
    """Training, validation, the test bounds, the diagnostics and the figures (generations
    draw z from the mixture prior; interpolation uses the flow's image of the base mean)."""
    tiny_config.model.posterior = "iaf"
    tiny_config.model.prior = "mixture"
    tiny_config.model.flow_hidden_size = 16
    tiny_config.objective.kl = "mc"
    tiny_config.training.num_epochs = 1
    train_and_evaluate(tiny_config, tmp_path / "run")
    result = evaluate_run(tmp_path / "run", num_importance_samples=32, importance_chunk_size=8)
    assert np.isfinite(result["test_nll"]["nats"])
    assert result["test_elbo"]["kl_estimator"] == "mc"
    assert result["latent"]["kl_per_dim"] is None
    assert result["latent"]["posterior_described"] == "the IAF's base Gaussian"
    assert -result["test_nll"]["nats"] > result["test_elbo"]["elbo"] - 1.0
    report = (tmp_path / "run" / "report.md").read_text()
    assert "(active units and I(x;z) of) | the IAF's base Gaussian |" in report
    assert (tmp_path / "run" / "figures" / "interpolation.png").exists()
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert np.isfinite(json.loads(records[-1])["validation/kl"])  # the Monte Carlo KL


def _prefix_jacobians(flow_steps: int, dim: int, z0, context, params) -> list[np.ndarray]:
    """``d z_t / d z_0`` of the first ``t`` steps, ``t = 1..flow_steps``: the flow truncated
    to its first ``t`` steps (their parameters only), differentiated by ``jax.jacfwd``."""
    jacobians = []
    for t in range(1, flow_steps + 1):
        prefix = flows.IAF(dim, num_steps=t, hidden_size=HIDDEN)
        kept = {f"made_{s}": params[f"made_{s}"] for s in range(t)}
        jacobian = jax.jacfwd(
            lambda v, prefix=prefix, kept=kept: prefix.apply({"params": kept}, v, context)[0]
        )
        jacobians.append(np.asarray(jax.jit(jacobian)(z0), np.float64))
    return jacobians


@pytest.mark.slow
def test_iaf_steps_alternate_their_order_so_the_flow_mixes_every_dimension():
    """Catches IAF steps that all use the same variable order (the module docstring: the
    order is "reversed every other step"). With one order, every step's Jacobian is lower
    triangular and so is the flow's: dimension 0 is never conditioned on the others, and
    stacking steps adds no dependence. Checked on ``jax.jacfwd`` of the flow: step 0's
    Jacobian is exactly lower triangular, each step ``t`` (``J_t J_{t-1}^{-1}``) is
    triangular in its own order, lower for even ``t`` and upper for odd ``t``, and from two
    steps on every output of the flow depends on every input."""
    dim, num_steps = 4, 3
    flow = flows.IAF(dim, num_steps=num_steps, hidden_size=HIDDEN)
    z0 = jax.random.normal(jax.random.key(0), (dim,))
    context = jax.random.normal(jax.random.key(1), (HIDDEN,))
    params = _perturbed(flow.init(jax.random.key(2), z0, context)["params"], jax.random.key(3))
    prefixes = _prefix_jacobians(num_steps, dim, z0, context, params)
    below = np.tril(np.ones((dim, dim), bool), -1)  # output d, input e < d
    above = below.T
    # The first step alone: exactly lower triangular (output d sees inputs 0..d).
    assert np.all(prefixes[0][above] == 0.0)
    assert np.all(np.abs(prefixes[0][below]) > 0.0)
    # Two steps or more: every output depends on every input.
    for t in range(1, num_steps):
        dense = np.abs(prefixes[t]) > 0.0
        assert dense.all(), (
            f"after {t + 1} steps output d does not depend on input e at (d, e) = "
            f"{np.argwhere(~dense).tolist()}"
        )
    # Each later step on its own, in the order of its step number.
    for t in range(1, num_steps):
        step = prefixes[t] @ np.linalg.inv(prefixes[t - 1])
        zero, seen = (below, above) if t % 2 else (above, below)
        scale = np.abs(step).max()
        assert np.all(np.abs(step[zero]) < 1e-6 * scale), (
            f"step {t} is not triangular in the order {'reversed' if t % 2 else 'identity'}:\n"
            f"{step}"
        )
        assert np.all(np.abs(step[seen]) > 1e-5 * scale), f"step {t} ignores a coordinate:\n{step}"
    # The whole flow's Jacobian: its log-determinant is the sum of the steps' log sigma.
    _, log_det = flow.apply({"params": params}, z0, context)
    np.testing.assert_allclose(log_det, np.linalg.slogdet(prefixes[-1])[1], rtol=1e-5, atol=1e-5)
