"""The VampPrior code's network parts (``vae_jax.core.networks``, ``likelihoods``), each
against a numpy transcription of its PyTorch original (``utils/nn.py``,
``utils/distributions.py`` and ``models/`` of jmtomczak/vae_vampprior)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from vae_jax import model
from vae_jax.core import likelihoods, networks
from vae_jax.model import priors

IMAGE = (4, 4, 1)


def _numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def test_gated_dense_is_value_times_sigmoid_gate_of_two_layers():
    """``GatedDense.forward``: ``h(x) * sigmoid(g(x))`` with two affine layers of their own
    (fails if the gate and value swap, if one product is shared, or without the sigmoid)."""
    layer = networks.GatedDense(5, kernel_init="he_normal")
    x = jax.random.normal(jax.random.key(0), (3, 7))
    params = layer.init(jax.random.key(1), x)["params"]
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(2), a.shape), params)
    p, xs = _numpy(params), np.asarray(x, np.float64)
    value = xs @ p["value_kernel"] + p["value_bias"]
    gate = xs @ p["gate_kernel"] + p["gate_bias"]
    expected = value * special.expit(gate)
    np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(p["value_kernel"], p["gate_kernel"])  # drawn with their own keys


def test_gated_mlp_has_no_other_nonlinearity():
    """``activation="gated"``: the layers are gated units and nothing else (a ReLU left
    after them would zero the negative outputs this checks for)."""
    mlp = networks.MLP((6, 6), "gated")
    x = jax.random.normal(jax.random.key(0), (50, 3))
    params = mlp.init(jax.random.key(1), x)["params"]
    assert set(params) == {"gated_0", "gated_1"}
    assert np.any(np.asarray(mlp.apply({"params": params}, x)) < 0)


def test_he_normal_kernels_have_the_variance_of_the_vampprior_code():
    """``he_init``: ``normal(0, sqrt(2 / in_features))``, untruncated (Flax's own
    ``he_normal`` truncates, which shrinks the variance by 0.77)."""
    kernel = networks.KERNEL_INITS["he_normal"](jax.random.key(0), (400, 2000))
    values = np.asarray(kernel).ravel()
    assert stats.kstest(values / np.sqrt(2 / 400), "norm").pvalue > 1e-3
    assert np.abs(values).max() > 2.5 * np.sqrt(2 / 400)  # not truncated at two std


def test_clipped_head_is_mean_layer_and_hardtanh_of_a_log_variance_layer():
    """``q_z_mean = Linear(h)``, ``q_z_logvar = Hardtanh(-6, 2)(Linear(h))``: the Gaussian's
    scale is ``exp(logvar / 2)`` of the clipped value (fails with the free log-scale head,
    or a clip of the log-scale instead of the log-variance)."""
    head = networks.GaussianLatentHead(3, log_variance_range=(-6.0, 2.0))
    h = 4.0 * jax.random.normal(jax.random.key(0), (20, 5))
    params = head.init(jax.random.key(1), h)["params"]
    params["log_variance"]["kernel"] = params["log_variance"]["kernel"] * 10.0  # reach the clip
    q = head.apply({"params": params}, h).gaussian
    p, hs = _numpy(params), np.asarray(h, np.float64)
    log_variance = np.clip(hs @ p["log_variance"]["kernel"] + p["log_variance"]["bias"], -6, 2)
    assert (log_variance == -6).any()
    assert (log_variance == 2).any()
    np.testing.assert_allclose(q.loc, hs @ p["loc"]["kernel"] + p["loc"]["bias"], rtol=1e-5)
    np.testing.assert_allclose(q.log_scale, 0.5 * log_variance, rtol=1e-5, atol=1e-6)


def test_clamped_bernoulli_is_the_vampprior_codes_log_bernoulli():
    """``log_bernoulli``: ``x log p + (1 - x) log(1 - p)`` with ``p = clamp(sigmoid(l), 1e-5,
    1 - 1e-5)``; the clip on the logits is the same map (fails with the plain Bernoulli at
    large logits, where log(1 - p) goes far below log(1e-5))."""
    head = likelihoods.ObservationHead("bernoulli", IMAGE, bernoulli_clip=1e-5)
    logits = jnp.asarray(np.linspace(-30, 30, 16).reshape(1, *IMAGE), jnp.float32)
    x = jnp.asarray((np.arange(16) % 2).reshape(1, *IMAGE), jnp.float32)
    got = head.apply({}, logits).log_prob(x)
    probs = np.clip(special.expit(np.asarray(logits, np.float64)), 1e-5, 1 - 1e-5)
    xs = np.asarray(x, np.float64)
    expected = np.sum(xs * np.log(probs) + (1 - xs) * np.log1p(-probs))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    plain = likelihoods.ObservationHead("bernoulli", IMAGE).apply({}, logits).log_prob(x)
    assert float(plain[0]) < float(got[0]) - 20  # the extreme logits cost more unclamped


def _hvae(**overrides):
    fields = dict(
        image_shape=IMAGE, latent_dim=2, hidden_sizes=(6, 6), activation="gated",
        kernel_init="he_normal", log_variance_range=(-6.0, 2.0), upper_latent_dims=(3,),
        upper_hidden_sizes=(6, 6), inference="top_down_skip", decoder_reads="all_layers",
    )  # fmt: skip
    return model.make_vae(**{**fields, **overrides})


@pytest.mark.slow
def test_decoder_reading_every_layer_depends_on_the_top_layer():
    """``p(x | z1, z2)``: the decoder's output moves with ``z2`` (one branch per layer);
    with ``decoder_reads="z1"`` it does not."""
    x = jnp.ones((1, *IMAGE))
    for reads, moves in (("all_layers", True), ("z1", False)):
        vae = _hvae(decoder_reads=reads)
        params = vae.init(jax.random.key(0))

        def pixels(z2, vae=vae, params=params):
            z = jnp.concatenate([jnp.full((1, 2), 0.3), z2], axis=-1)
            return vae.decode(params, z).log_prob(x).sum()

        gradient = jax.grad(pixels)(jnp.full((1, 3), 0.5))
        assert bool(jnp.any(gradient != 0)) == moves, reads


@pytest.mark.slow
def test_top_down_skip_posterior_is_the_product_of_its_networks_outputs():
    """``log q(z|x) = log N(z2; q(z2|x)) + log N(z1; q(z1|x, z2))``, the two Gaussians read
    from the networks directly and evaluated by scipy (fails if ``q(z1|.)`` ignored x or
    z2, or if the layers' densities were mixed up)."""
    vae = _hvae()
    params = vae.init(jax.random.key(0))
    x = (jax.random.uniform(jax.random.key(1), (5, *IMAGE)) > 0.5).astype(jnp.float32)
    q = vae.encode(params, x)
    z = q.sample(jax.random.key(2))
    z1, z2 = z[:, :2], z[:, 2:]
    top = q.gaussians[-1]
    lower = q.conditional(q.params, 0, z2, q.features[0])
    expected = stats.norm.logpdf(
        np.asarray(z2, np.float64), np.asarray(top.loc), np.exp(np.asarray(top.log_scale))
    ).sum(-1) + stats.norm.logpdf(
        np.asarray(z1, np.float64), np.asarray(lower.loc), np.exp(np.asarray(lower.log_scale))
    ).sum(-1)
    np.testing.assert_allclose(q.log_prob(z), expected, rtol=1e-5)
    # q(z1 | x, z2) reads both: another z2, or another x, moves it.
    other_z2 = q.conditional(q.params, 0, z2 + 1.0, q.features[0])
    assert not np.allclose(other_z2.loc, lower.loc)
    other_x = vae.encode(params, 1.0 - x)
    assert not np.allclose(other_x.conditional(q.params, 0, z2, other_x.features[0]).loc, lower.loc)


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["standard_normal", "vampprior"])
def test_top_down_skip_vampprior_mixes_the_top_posteriors_at_the_pseudo_inputs(prior):
    """The prior of ``z2``: N(0, I), or the VampPrior ``(1/C) sum_c q(z2 | u_c)``, its
    components the encoder's ``q(z2|u)`` at the pseudo-inputs, exactly."""
    vae = _hvae(prior=prior, prior_components=3)
    params = vae.init(jax.random.key(0))
    z2 = jax.random.normal(jax.random.key(1), (4, 3))
    top = vae.prior(params).top
    if prior == "standard_normal":
        expected = stats.norm.logpdf(np.asarray(z2, np.float64)).sum(-1)
    else:
        u = priors.pseudo_inputs(params["prior"])
        q = vae.encode(params, u).gaussians[-1]
        per_component = stats.norm.logpdf(
            np.asarray(z2, np.float64)[:, None],
            np.asarray(q.loc)[None],
            np.exp(np.asarray(q.log_scale))[None],
        ).sum(-1)
        expected = special.logsumexp(per_component, axis=1) - np.log(3)
    np.testing.assert_allclose(top.log_prob(z2), expected, rtol=1e-5)


def test_conv_refuses_the_mlp_only_parts_in_one_line():
    for field, value in (("activation", "gated"), ("log_variance_range", (-6.0, 2.0))):
        with pytest.raises(ValueError, match=field) as error:
            model.make_vae(
                image_shape=(8, 8, 1), latent_dim=2, architecture="conv", **{field: value}
            )
        assert "\n" not in str(error.value)
