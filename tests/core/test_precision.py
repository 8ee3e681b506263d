"""Mixed precision (``model.compute_dtype``) and the float32 matmul precision setting.

The promise (vae_jax/core/precision.py): with ``bfloat16`` every matrix product of the networks
takes bfloat16 operands and accumulates in float32; parameters, activations between layers,
log-probabilities, KLs and reductions stay float32. With ``float32`` nothing changes.
"""

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from experiments.configs import tiny
from vae_jax import config_checks, model
from vae_jax.core import precision
from vae_jax.errors import ConfigError
from vae_jax.model import flows
from vae_jax.run import manifest, runtime

MATMUL_PRIMITIVES = {"dot_general", "conv_general_dilated"}


def _vae(compute_dtype, architecture="mlp", likelihood="bernoulli"):
    return model.make_vae(
        image_shape=(8, 8, 1),
        latent_dim=3,
        hidden_sizes=(16, 8),
        conv_channels=(4, 6),
        architecture=architecture,
        likelihood=likelihood,
        compute_dtype=compute_dtype,
    )


def _images(n=5):
    return jax.random.bernoulli(jax.random.key(7), 0.4, (n, 8, 8, 1)).astype(jnp.float32)


def _equations(jaxpr):
    """Every equation of a jaxpr, sub-jaxprs (custom VJPs, scans) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.core.jaxprs_in_params(eqn.params):
            yield from _equations(sub)


def _bf16_round(a) -> np.ndarray:
    """float32 values rounded to bfloat16 (round to nearest even), back in float64."""
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_parameters_are_float32_and_the_same_for_both_compute_dtypes(architecture):
    key = jax.random.key(0)
    f32 = jax.jit(_vae("float32", architecture).init)(key)
    bf16 = jax.jit(_vae("bfloat16", architecture).init)(key)
    assert jax.tree.structure(f32) == jax.tree.structure(bf16)
    for a, b in zip(jax.tree.leaves(f32), jax.tree.leaves(bf16), strict=True):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)


def _products(vae, params, kl="analytic"):
    """(primitive, input dtypes, output dtype) of every product in the ELBO's gradient."""

    def loss(p):
        return -vae.elbo(p, jax.random.key(1), _images(), kl=kl).elbo.mean()

    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss))(params).jaxpr
    products, others = [], set()
    for eqn in _equations(jaxpr):
        out_dtypes = {v.aval.dtype for v in eqn.outvars if hasattr(v.aval, "dtype")}
        if eqn.primitive.name in MATMUL_PRIMITIVES:
            (out,) = out_dtypes
            products.append((eqn.primitive.name, tuple(v.aval.dtype for v in eqn.invars), out))
        elif jnp.dtype(jnp.bfloat16) in out_dtypes:
            others.add(eqn.primitive.name)
    return products, others


def test_every_dense_product_forward_and_backward_is_bfloat16_in_float32_out():
    """Each dense layer's forward, input-gradient and weight-gradient product reads bfloat16
    and writes float32; the only other operations producing bfloat16 are casts."""
    vae = _vae("bfloat16")
    products, others = _products(vae, jax.eval_shape(vae.init, jax.random.key(0)))
    bf16, f32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
    assert products
    assert all(p == ("dot_general", (bf16, bf16), f32) for p in products), products
    assert others == {"convert_element_type"}
    # three products per layer (6 layers); the image's own gradient is computed too (the
    # custom VJP returns both) and then discarded
    assert len(products) == 3 * 6


def test_every_product_of_an_iaf_model_and_its_mades_is_bfloat16_in_float32_out():
    """model.compute_dtype reaches the flow: each MADE's four products (the masked input,
    the context, the two masked outputs), forward and backward, read bfloat16 and write
    float32 like the encoder's and the decoder's."""
    flow_steps = 2
    vae = model.make_vae(
        image_shape=(8, 8, 1), latent_dim=3, hidden_sizes=(16, 8), posterior="iaf",
        flow_steps=flow_steps, flow_hidden_size=12, compute_dtype="bfloat16",
    )  # fmt: skip
    params = jax.eval_shape(vae.init, jax.random.key(0))
    products, others = _products(vae, params, kl="mc")
    bf16, f32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
    assert all(p == ("dot_general", (bf16, bf16), f32) for p in products), products
    assert others == {"convert_element_type"}
    # three products per layer: the encoder's two hidden layers, q's head and the context,
    # the decoder's three layers, and four per MADE
    assert len(products) == 3 * (4 + 3 + 4 * flow_steps)


@pytest.mark.slow
def test_made_matches_a_numpy_reference_with_bfloat16_operands():
    """Each of a MADE's products rounds its operands (the masked float32 kernels) to
    bfloat16 and sums exactly; biases, the ELU and the outputs stay float32."""
    dim, hidden_size = 4, 12
    made = flows.MADE(dim, hidden_size, reverse=True, compute_dtype="bfloat16")
    z = jax.random.normal(jax.random.key(0), (5, dim))
    context = jax.random.normal(jax.random.key(1), (5, 6))
    params = made.init(jax.random.key(2), z, context)["params"]
    params = jax.tree.map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.key(3), p.shape), params
    )  # zero biases would hide a missing bias
    m, s = jax.jit(lambda p: made.apply({"params": p}, z, context))(params)
    assert m.dtype == s.dtype == jnp.float32

    hidden_mask, output_mask = flows.made_masks(dim, hidden_size, reverse=True)
    c = params["context"]
    h = _bf16_round(z) @ _bf16_round(params["w_in"] * hidden_mask)
    h = h + _bf16_round(context) @ _bf16_round(c["kernel"]) + np.asarray(c["bias"], np.float64)
    h = np.where(h > 0, h, np.expm1(h)).astype(np.float32)  # ELU, float32 between products
    for name, out in (("m", m), ("s", s)):
        w = _bf16_round(params[f"w_{name}"] * output_mask)
        reference = _bf16_round(h) @ w + np.asarray(params[f"b_{name}"], np.float64)
        np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)
    # and the float32 MADE really computes something else (the test can fail)
    full = flows.MADE(dim, hidden_size, reverse=True).apply({"params": params}, z, context)
    assert np.max(np.abs(np.asarray(full[0]) - np.asarray(m))) > 1e-4


def test_convolutions_take_bfloat16_forward_and_float32_backward():
    """What layer_options documents for convolutions: bfloat16 operands forward, JAX's
    transposes (a float32 cotangent times a rounded operand) backward."""
    vae = _vae("bfloat16", "conv")
    products, others = _products(vae, jax.eval_shape(vae.init, jax.random.key(0)))
    bf16, f32 = jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)
    convs = [p for p in products if p[0] == "conv_general_dilated"]
    forward = [p for p in convs if p[1] == (bf16, bf16)]
    backward = [p for p in convs if p[1] != (bf16, bf16)]
    assert len(forward) == 4  # 2 convolutions + 2 transposed convolutions
    assert all(p[2] == f32 for p in forward)
    assert backward
    assert all(f32 in p[1] and p[2] == f32 for p in backward)
    dense = [p for p in products if p[0] == "dot_general"]
    assert dense
    assert all(p[1:] == ((bf16, bf16), f32) for p in dense)
    # casts, and the kernel flip of the transposes' gradients (a rounded operand moved)
    assert others == {"convert_element_type", "rev"}


@pytest.mark.slow
def test_mixed_matmul_gradients_equal_a_numpy_reference():
    """The custom VJP: dx = round(g) @ round(w).T, dw = round(x).T @ round(g), float32."""
    x = jax.random.normal(jax.random.key(0), (2, 3, 5))
    w = jax.random.normal(jax.random.key(1), (5, 4))
    g = jax.random.normal(jax.random.key(2), (2, 3, 4))

    @jax.jit
    def forward_and_backward(x, w, g):
        y, vjp = jax.vjp(precision.mixed_matmul("bfloat16"), x, w)
        return y, *vjp(g)

    y, dx, dw = forward_and_backward(x, w, g)
    np.testing.assert_allclose(y, _bf16_round(x) @ _bf16_round(w), rtol=1e-6)
    np.testing.assert_allclose(dx, _bf16_round(g) @ _bf16_round(w).T, rtol=1e-6)
    xr, gr = _bf16_round(x).reshape(6, 5), _bf16_round(g).reshape(6, 4)
    np.testing.assert_allclose(dw, xr.T @ gr, rtol=1e-6)
    assert dx.dtype == dw.dtype == jnp.float32
    # the float32 gradient differs: the rounding is real
    exact_dw = np.asarray(x).reshape(6, 5).T @ np.asarray(g).reshape(6, 4)
    assert np.max(np.abs(dw - exact_dw)) > 1e-4


@pytest.mark.slow
def test_encoder_matches_a_numpy_reference_with_bfloat16_operands():
    """Each layer: operands rounded to bfloat16, products summed exactly (float64 here,
    float32 accumulation in the model), bias and activation in float32."""
    vae = _vae("bfloat16")
    params = jax.jit(vae.init)(jax.random.key(0))
    x = _images(4)
    q = jax.jit(vae.encode)(params, x)

    h = np.asarray(x, np.float64).reshape(4, -1)
    encoder = params["encoder"]
    layers = [
        encoder["mlp"]["dense_0"],
        encoder["mlp"]["dense_1"],
        encoder["head"]["latent_params"],
    ]
    for i, layer in enumerate(layers):
        h = _bf16_round(h) @ _bf16_round(layer["kernel"]) + np.asarray(layer["bias"], np.float64)
        if i < 2:
            h = np.maximum(h, 0.0)
        h = h.astype(np.float32).astype(np.float64)  # float32 between layers
    loc, log_scale = np.split(h, 2, axis=-1)
    np.testing.assert_allclose(q.loc, loc, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q.log_scale, log_scale, rtol=1e-5, atol=1e-6)
    # and the reference really differs from float32 products (the test can fail)
    full = jax.jit(_vae("float32").encode)(params, x)
    assert np.max(np.abs(np.asarray(full.loc) - loc)) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(
    "likelihood", ["bernoulli", "continuous_bernoulli", "gaussian", "discretized_logistic"]
)
def test_bfloat16_elbo_and_gradients_are_float32_and_close_to_float32(likelihood):
    x = _images()
    if likelihood == "discretized_logistic":
        x = jnp.round(x * 255.0)
    f32, bf16 = _vae("float32", likelihood=likelihood), _vae("bfloat16", likelihood=likelihood)
    params = jax.jit(f32.init)(jax.random.key(0))

    def loss(vae, p):
        return -vae.elbo(p, jax.random.key(1), x).elbo.mean()

    both = [jax.value_and_grad(functools.partial(loss, vae)) for vae in (f32, bf16)]
    (value32, grads32), (value16, grads16) = jax.jit(lambda p: [f(p) for f in both])(params)
    assert value16.dtype == jnp.float32
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads16))
    np.testing.assert_allclose(value16, value32, rtol=2e-2)
    g32 = np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads32)])  # float32, as the
    g16 = np.concatenate([np.ravel(g) for g in jax.tree.leaves(grads16)])  # gradients
    cosine = np.dot(g32, g16) / (np.linalg.norm(g32) * np.linalg.norm(g16))
    assert cosine > 0.99
    assert not np.array_equal(value16, value32)  # bfloat16 really computed something else


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_float32_compute_is_the_plain_flax_model(architecture):
    """compute_dtype=float32 adds nothing: no casts to bfloat16, no custom VJP, and no
    product with the fixed native precision of the bfloat16 layers: float32 products follow
    runtime.matmul_precision."""
    vae = _vae("float32", architecture)
    params = jax.eval_shape(vae.init, jax.random.key(0))
    jaxpr = jax.make_jaxpr(lambda p: vae.elbo(p, jax.random.key(1), _images()).elbo)(params)
    equations = list(_equations(jaxpr.jaxpr))
    dtypes = {v.aval.dtype for e in equations for v in e.outvars if hasattr(v.aval, "dtype")}
    assert jnp.dtype(jnp.bfloat16) not in dtypes
    assert not [e for e in equations if e.primitive.name.startswith("custom_vjp")]
    products = [e for e in equations if e.primitive.name in MATMUL_PRIMITIVES]
    assert products
    # None, or what runtime.matmul_precision made JAX's default (earlier tests may set it);
    # never the native precision the bfloat16 layers fix.
    native = (jax.lax.Precision.DEFAULT, jax.lax.Precision.DEFAULT)
    assert not [e for e in products if e.params["precision"] == native]


def test_an_unknown_compute_dtype_fails_naming_the_field():
    config = tiny.get_config()
    config.model.compute_dtype = "float16"
    with pytest.raises(ConfigError, match=r"^model\.compute_dtype='float16' is not one of"):
        config_checks.check_config(config)
    config = tiny.get_config()
    config.evaluation.compute_dtype = "bf16"
    with pytest.raises(ConfigError, match=r"^evaluation\.compute_dtype='bf16' is not one of"):
        config_checks.check_config(config)
    with pytest.raises(ValueError, match="compute_dtype='half'"):
        _vae("half")


def test_matmul_precision_is_applied_and_recorded():
    config = tiny.get_config()
    config.runtime.matmul_precision = "nonsense"
    with pytest.raises(ConfigError, match=r"^runtime\.matmul_precision='nonsense'"):
        config_checks.check_config(config)
    before = jax.config.jax_default_matmul_precision
    try:
        for value in precision.MATMUL_PRECISIONS:
            config.runtime.matmul_precision = value
            runtime.apply_runtime_config(config)
            assert manifest.environment()["jax_settings"]["jax_default_matmul_precision"] == value
    finally:
        jax.config.update("jax_default_matmul_precision", before)


def test_the_default_matmul_precision_keeps_cpu_float32_bits():
    """highest (the default) is what the CPU computes anyway: float32 runs are unchanged."""
    a = jax.random.normal(jax.random.key(0), (64, 96))
    b = jax.random.normal(jax.random.key(1), (96, 32))
    np.testing.assert_array_equal(jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST), jnp.dot(a, b))
