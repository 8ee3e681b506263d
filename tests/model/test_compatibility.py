"""Parts that compose: the compatibility table allows the papers' best models and refuses only
the undefined, every refusal of the table is the core's, and the new combinations (a
hierarchy with a learned prior on its top layer, a flow for z_1 of a hierarchy) bound a
brute-force log p(x). Every allowed combination runs in
tests/promises/test_composition_matrix.py."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from tests.helpers.compositions import (
    ALLOWED,
    IMAGE,
    MODELS,
    X,
    _model_parts,
    _objective,
    _random_params,
    _vae,
)
from vae_jax import model
from vae_jax.model import compatibility, priors

REFUSED = [c for c in compatibility.all_combinations() if compatibility.refusals(c)]


def test_the_table_allows_the_papers_best_models_and_refuses_only_the_undefined():
    allowed = set(ALLOWED)
    for inference in ("bottom_up", "top_down"):
        for prior in ("mixture", "vampprior"):  # HVAE + VampPrior (Tomczak & Welling 2018)
            for arch in ("mlp", "conv"):
                assert compatibility.Combination(prior, "gaussian", 2, inference, arch,
                                                 kl="mc") in allowed  # fmt: skip
    # IAF for z_1 of a hierarchy (Kingma et al. 2016), with any prior on top
    assert compatibility.Combination("vampprior", "iaf", 2, "bottom_up", kl="mc") in allowed
    reasons = {r.reason.split(",")[0].split(";")[0] for c in REFUSED for r in
               compatibility.refusals(c)}  # fmt: skip
    assert reasons == {
        "has no closed form for {model.prior}",
        "has no closed form for {model.posterior}",
        "has no closed form for {model.upper_latent_dims}",
        "needs a KL per latent dimension",
        "needs q's density at any z",
        "applies to the elbo objective with kl='mc'",
        "applies to the iwae objective",
        "does not combine with {model.prior}: 'vampprior' needs q's density at any z (it is a "
        "mixture of the top layer's posteriors)",
    }, reasons
    # The one model refusal: a one-layer flow under the VampPrior.
    refused_models = {_model_parts(c) for c in REFUSED} - set(MODELS)
    assert refused_models == {("vampprior", "iaf", 1, "bottom_up", a) for a in ("mlp", "conv")}


def test_every_refusal_of_the_table_is_a_refusal_of_the_core():
    """The core (make_vae, make_objective) refuses what the table refuses, with the table's
    reason in one line: the table is the one place the rules are written."""
    refused = [c for c in REFUSED if c.architecture == "mlp"]  # no rule reads it
    assert len(refused) > 100
    for combination in refused:
        reason = compatibility.refusals(combination)[0].reason
        expected = reason.split("{")[0].split(",")[0].split(":")[0]
        with pytest.raises(ValueError, match=re.escape(expected)) as error:
            _objective(_vae(*_model_parts(combination)), combination)
        assert "\n" not in str(error.value)


# Brute force: one unit per layer on the four pixels, log p(x) by quadrature over (z1, z2).
GRID = np.linspace(-9.0, 9.0, 401)
STEP = GRID[1] - GRID[0]


# The two-level HVAE of the VampPrior code comes with its parts: gated layers, clipped
# log-variance heads, a clamped Bernoulli and a decoder reading both layers.
VAMPPRIOR_CODE_PARTS = dict(
    activation="gated", kernel_init="he_normal", log_variance_range=(-6.0, 2.0),
    bernoulli_clip=1e-5, decoder_reads="all_layers",
)  # fmt: skip


@functools.cache
def _two_unit_model(prior: str, posterior: str, inference: str):
    parts = VAMPPRIOR_CODE_PARTS if inference == "top_down_skip" else {"activation": "tanh"}
    vae = model.make_vae(
        image_shape=IMAGE, latent_dim=1, hidden_sizes=(4,),
        prior=prior, prior_components=3, posterior=posterior, flow_steps=2,
        flow_hidden_size=4, upper_latent_dims=(1,), upper_hidden_sizes=(4,),
        inference=inference, **parts,
    )  # fmt: skip
    params = _random_params(jax.eval_shape(vae.init, jax.random.key(3)), 4, 0.3)
    if prior == "vampprior":  # pseudo-inputs spread over (0, 1), not all near black
        logits = 2.0 * jax.random.normal(jax.random.key(5), (3, *IMAGE))
        params["prior"] = {"pseudo_input_logits": logits}
    return vae, params


def _scipy_top_log_prior(vae, params, prior: str, z2: np.ndarray) -> np.ndarray:
    """log p(z2) from scipy: N(0, 1); the mixture's weights, means and scales from its
    parameters; the VampPrior's components read from q at the pseudo-inputs by encode."""
    if prior == "standard_normal":
        return stats.norm.logpdf(z2)
    if prior == "mixture":
        p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["prior"])
        log_w, loc, scale = (
            special.log_softmax(p["logits"]),
            p["loc"][:, 0],
            np.exp(p["log_scale"][:, 0]),
        )
    else:
        u = np.asarray(priors.pseudo_inputs(params["prior"]))
        top = vae.encode(params, u).top_gaussian()  # q(z2|u_c): bernoulli input is unscaled
        log_w = np.full(3, -np.log(3.0))
        loc, scale = np.asarray(top.loc, np.float64)[:, 0], np.exp(np.asarray(top.log_scale))[:, 0]
    per_component = stats.norm.logpdf(z2[:, None], loc[None], scale[None])
    return special.logsumexp(per_component + log_w, axis=1)


# Every binary image of four pixels: their p(x) sum to 1.
ALL_IMAGES = jnp.asarray((np.arange(16)[:, None] >> np.arange(4)) & 1, jnp.float32).reshape(
    16, *IMAGE
)


@functools.partial(jax.jit, static_argnums=0)
def _networks_on_grid(vae, params, z):
    conditional = vae.prior(params).layer(0, [None, z[:, 1:]])  # p(z1|z2)
    return conditional, vae.decode(params, z[:, None]).log_prob(ALL_IMAGES)


def _brute_force_log_px(vae, params, prior: str) -> np.ndarray:
    z1, z2 = np.meshgrid(GRID, GRID, indexing="ij")
    z = jnp.asarray(np.stack([z1, z2], -1).reshape(-1, 2), jnp.float32)
    conditional, log_likelihood = _networks_on_grid(vae, params, z)
    log_conditional = stats.norm.logpdf(
        np.asarray(z[:, 0], np.float64),
        np.asarray(conditional.loc[:, 0], np.float64),
        np.exp(np.asarray(conditional.log_scale[:, 0], np.float64)),
    )
    log_prior = log_conditional + _scipy_top_log_prior(
        vae, params, prior, np.asarray(z[:, 1], np.float64)
    )
    log_px = special.logsumexp(np.asarray(log_likelihood, np.float64) + log_prior[:, None], axis=0)
    return log_px + 2 * np.log(STEP), special.logsumexp(log_prior) + 2 * np.log(STEP)


@functools.partial(jax.jit, static_argnums=0)
def _posterior_density_on_grid(vae, params, z):
    """log q(z|x) on the grid for each of the images X[:4], ``(4, G)``."""
    q = vae.encode(params, X[:4])
    return q.log_prob(z[:, None, :]).T


NEW_COMBINATIONS = [
    ("mixture", "gaussian", "bottom_up"),
    ("mixture", "gaussian", "top_down"),
    ("vampprior", "gaussian", "bottom_up"),
    ("vampprior", "gaussian", "top_down"),
    ("standard_normal", "iaf", "bottom_up"),
    ("vampprior", "iaf", "bottom_up"),
    ("mixture", "iaf", "top_down"),
    ("standard_normal", "gaussian", "top_down_skip"),
    ("vampprior", "gaussian", "top_down_skip"),
    ("mixture", "iaf", "top_down_skip"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("prior", "posterior", "inference"), NEW_COMBINATIONS)
def test_the_new_combinations_bound_the_brute_force_log_likelihood(prior, posterior, inference):
    """The model is normalized: p(z) integrates to 1 on the grid and p(x) sums to 1 over the
    16 images; q(z|x) integrates to 1 where its density is known everywhere. The IWAE bound
    approaches the quadrature's log p(x) from below as K grows (K = 1 is the ELBO): each
    bound is below log p(x), each larger K is closer, and K = 20000 closes most of the gap."""
    vae, params = _two_unit_model(prior, posterior, inference)
    log_px, log_total_prior = _brute_force_log_px(vae, params, prior)
    np.testing.assert_allclose(log_total_prior, 0.0, atol=2e-3)
    np.testing.assert_allclose(special.logsumexp(log_px), 0.0, atol=2e-3)  # sum_x p(x) = 1
    log_px = log_px[[6, 3, 8, 13]]  # the images of X[:4], pixels as bits
    if vae.density_everywhere:
        wide = np.linspace(-30.0, 30.0, 801)  # q(z1|x) of random parameters is broad
        z1, z2 = np.meshgrid(wide, wide, indexing="ij")
        z = jnp.asarray(np.stack([z1, z2], -1).reshape(-1, 2), jnp.float32)
        log_q = np.asarray(_posterior_density_on_grid(vae, params, z), np.float64)
        log_step = 2 * np.log(wide[1] - wide[0])
        np.testing.assert_allclose(special.logsumexp(log_q, axis=1) + log_step, 0.0, atol=2e-3)
    gaps, errors = [], []
    for num, num_keys in ((1, 4000), (100, 200), (20_000, 4)):  # K draws, keys averaged
        keys = jax.random.split(jax.random.fold_in(jax.random.key(6), num), num_keys)
        values = np.asarray(_mean_bound(vae, params, keys, num), np.float64)  # (keys, 4)
        gaps.append(log_px - values.mean(0))
        errors.append(values.std(0, ddof=1) / np.sqrt(num_keys))
    gaps, errors = np.asarray(gaps), np.asarray(errors)
    assert np.all(gaps > -3 * errors - 2e-3), (gaps, errors)  # below log p(x)
    assert np.all(gaps[:-1] > gaps[1:] - 3 * (errors[:-1] + errors[1:])), gaps  # tighter
    assert np.all(gaps[-1] < 0.5 * gaps[0]), gaps  # most of the ELBO's gap closed


@functools.partial(jax.jit, static_argnums=(0, 3))
def _mean_bound(vae, params, keys, num):
    return jax.lax.map(lambda k: vae.iwae_bound(params, k, X[:4], num, min(num, 2000)), keys)
