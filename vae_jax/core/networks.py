"""Encoder and decoder networks (Flax linen), used only as pure ``init``/``apply``.

The encoder maps an image to the parameters of ``q(z|x)``, always as an ``Encoded``: a
``DiagGaussian`` and, when a posterior needs one, a context vector. The decoder maps a
latent vector to the parameters of ``p(x|z)`` through the ``ObservationHead`` of the chosen
likelihood. Both are deterministic: no dropout, no rng collections. Inputs may carry any
number of leading batch axes. ``compute_dtype`` sets the precision of every matrix product
(``vae_jax.core.precision``); parameters are float32 always. ``make_networks`` builds both
by keyword.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from vae_jax.core import distributions, likelihoods, precision

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
    "tanh": jnp.tanh,
    "softplus": nn.softplus,
    "leaky_relu": nn.leaky_relu,
}

# gated_conv: the convolutional networks of the VampPrior code's convHVAE_2level.py
ARCHITECTURES = ("mlp", "conv", "gated_conv")

# Their gated convolutions as (channels, kernel, stride, padding), PyTorch's symmetric
# padding: the encoder of the top layer, q(z_1|x, z_2)'s reading of x, and the decoder's
# full-resolution stack after its dense layers (then a 1x1 convolution to the pixels).
GATED_CONV_ENCODER = ((32, 7, 1, 3), (32, 3, 2, 1), (64, 5, 1, 2), (64, 3, 2, 1), (6, 3, 1, 1))
GATED_CONV_DATA_BRANCH = ((32, 3, 1, 1), (32, 3, 2, 1), (64, 3, 1, 1), (64, 3, 2, 1), (6, 3, 1, 1))
GATED_CONV_DECODER = ((64, 3, 1, 1),) * 4

# ``activation="gated"``: every dense layer (and convolution) is a gated linear unit,
# ``W x * sigmoid(V x)`` with no other nonlinearity (Dauphin et al., 2017), the
# ``GatedDense`` and ``GatedConv2d`` of Tomczak & Welling's VampPrior code.
GATED = "gated"

# Kernel initializers of the dense layers by name: Flax's default, or He et al.'s normal
# (std sqrt(2 / fan_in), untruncated), which the VampPrior code applies to every Linear.
KERNEL_INITS = {
    "lecun_normal": nn.initializers.lecun_normal(),
    "he_normal": nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The elementwise activation ``name`` (identity for ``gated``: its layers gate)."""
    if name == GATED:
        return lambda h: h
    if name not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {[*sorted(ACTIVATIONS), GATED]}"
        )
    return ACTIVATIONS[name]


def get_kernel_init(name: str):
    if name not in KERNEL_INITS:
        raise ValueError(f"unknown kernel_init {name!r}; choose one of {sorted(KERNEL_INITS)}")
    return KERNEL_INITS[name]


class GatedDense(nn.Module):
    """``Dense_value(h) * sigmoid(Dense_gate(h))``: a gated linear unit (Dauphin et al.,
    2017), as ``GatedDense`` in the VampPrior code (``utils/nn.py``).

    The two layers keep their own parameters (``value`` and ``gate``, each a kernel and a
    bias, as PyTorch's two ``Linear``: per-tensor optimizers see them apart) and run as one
    matrix product of their concatenated kernels, which XLA's CPU backend computes faster
    than two.
    """

    features: int
    compute_dtype: str = "float32"
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        init = get_kernel_init(self.kernel_init)
        shape = (h.shape[-1], self.features)
        value_kernel = self.param("value_kernel", init, shape, jnp.float32)
        gate_kernel = self.param("gate_kernel", init, shape, jnp.float32)
        value_bias = self.param("value_bias", nn.initializers.zeros, (self.features,))
        gate_bias = self.param("gate_bias", nn.initializers.zeros, (self.features,))
        kernel = jnp.concatenate([value_kernel, gate_kernel], axis=1)
        bias = jnp.concatenate([value_bias, gate_bias])
        if self.compute_dtype == "float32":
            out = jnp.matmul(h, kernel)
        else:
            out = precision.mixed_matmul(self.compute_dtype)(h, kernel)
        value, gate = jnp.split(out + bias, 2, axis=-1)
        return value * jax.nn.sigmoid(gate)


class GatedConv(nn.Module):
    """``Conv_value(h) * sigmoid(Conv_gate(h))``, as ``GatedConv2d`` in the VampPrior code
    (its convolutions keep their framework's default initializer there, and here)."""

    features: int
    kernel_size: int
    strides: int = 1
    padding: int = 0  # on every side, as PyTorch's Conv2d(padding=...)
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        conv = precision.layer_options(self.compute_dtype)["conv"]
        options = dict(
            kernel_size=(self.kernel_size,) * 2, strides=(self.strides,) * 2,
            padding=((self.padding, self.padding),) * 2, kernel_init=conv_kernel_init, **conv,
        )  # fmt: skip
        value = nn.Conv(self.features, name="value", **options)(h)
        gate = nn.Conv(self.features, name="gate", **options)(h)
        return value * jax.nn.sigmoid(gate)


def conv_kernel_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
    """Flax's default kernel initializer (LeCun normal) for a convolution, drawn as the
    kernel's matrix (receptive field x input channels, output channels) and reshaped.

    The values are the bits of ``nn.initializers.lecun_normal()(key, shape)``: the fan-in
    is the same, and JAX's random bits depend on an element's position in row-major
    order, not on the shape. XLA compiles the 2-d draw several times faster than the 4-d
    one (measured 0.25 s against 0.45-1.8 s per kernel on CPU).
    """
    matrix_shape = (math.prod(shape[:-1]), shape[-1])
    return nn.initializers.lecun_normal()(key, matrix_shape, dtype).reshape(shape)


def _flatten_image(x: jax.Array) -> jax.Array:
    return x.reshape((*x.shape[:-3], -1))


class Encoded(NamedTuple):
    """What the encoder returns, always: the Gaussian ``N(loc, diag(exp(log_scale))^2)``
    over the latent layer it reads and, when asked for (``context_dim > 0``), a context
    vector beside it (a flow posterior's input, a ladder's features ``d_1``; else None)."""

    gaussian: distributions.DiagGaussian
    context: jax.Array | None = None


def clipped_log_variance_gaussian(
    h: jax.Array, latent_dim: int, log_variance_range, dense: dict, init
) -> distributions.DiagGaussian:
    """The VampPrior code's Gaussian head, called inside a compact module: ``loc =
    Linear(h)`` and ``log sigma^2 = hardtanh(Linear(h), low, high)``, two layers."""
    low, high = (float(v) for v in log_variance_range)
    loc = nn.Dense(latent_dim, name="loc", kernel_init=init, **dense)(h)
    raw = nn.Dense(latent_dim, name="log_variance", kernel_init=init, **dense)(h)
    return distributions.DiagGaussian(loc, 0.5 * jnp.clip(raw, low, high))


class GaussianLatentHead(nn.Module):
    """Features -> ``Encoded``: a DiagGaussian(loc, log_scale) over the latent space and,
    with ``context_dim > 0``, a context vector computed beside it.

    With ``log_variance_range = (low, high)`` the head is the VampPrior code's: separate
    layers for the mean and the log-variance, the latter clipped to the range.
    """

    latent_dim: int
    compute_dtype: str = "float32"
    context_dim: int = 0
    kernel_init: str = "lecun_normal"
    log_variance_range: tuple[float, ...] = ()

    @nn.compact
    def __call__(self, h: jax.Array):
        dense = precision.layer_options(self.compute_dtype)["dense"]
        init = get_kernel_init(self.kernel_init)
        if self.log_variance_range:
            q = clipped_log_variance_gaussian(
                h, self.latent_dim, self.log_variance_range, dense, init
            )
        else:
            out = nn.Dense(2 * self.latent_dim, name="latent_params", kernel_init=init, **dense)(h)
            loc, log_scale = jnp.split(out, 2, axis=-1)
            q = distributions.DiagGaussian(loc, log_scale)
        if not self.context_dim:
            return Encoded(q)
        return Encoded(q, nn.Dense(self.context_dim, name="context", kernel_init=init, **dense)(h))


class MLP(nn.Module):
    """Dense layers, each followed by the activation (``gated``: gated dense layers)."""

    sizes: Sequence[int]
    activation: str = "relu"
    compute_dtype: str = "float32"
    kernel_init: str = "lecun_normal"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        if self.activation == GATED:
            for i, size in enumerate(self.sizes):
                h = GatedDense(size, self.compute_dtype, self.kernel_init, name=f"gated_{i}")(h)
            return h
        act = get_activation(self.activation)
        dense = precision.layer_options(self.compute_dtype)["dense"]
        init = get_kernel_init(self.kernel_init)
        for i, size in enumerate(self.sizes):
            h = act(nn.Dense(size, name=f"dense_{i}", kernel_init=init, **dense)(h))
        return h


class MLPEncoder(nn.Module):
    """Flattened image -> dense layers -> ``Encoded`` (q's Gaussian, a context)."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"
    compute_dtype: str = "float32"
    context_dim: int = 0  # > 0: also a context vector (a flow's input, a ladder's d_1)
    kernel_init: str = "lecun_normal"
    log_variance_range: tuple[float, ...] = ()  # (low, high): GaussianLatentHead's clip

    @nn.compact
    def __call__(self, x: jax.Array):
        h = MLP(
            self.hidden_sizes, self.activation, self.compute_dtype, self.kernel_init, name="mlp"
        )(_flatten_image(x))
        return GaussianLatentHead(
            self.latent_dim, self.compute_dtype, self.context_dim, self.kernel_init,
            tuple(self.log_variance_range), name="head",
        )(h)  # fmt: skip


def _branches(z, input_sizes, width, activation, compute_dtype, kernel_init) -> jax.Array:
    """Inside a compact module: the parts of ``z`` (sizes ``input_sizes``), each through its
    own dense layer of ``width`` units (``branch_<i>``), concatenated."""
    parts = jnp.split(z, list(itertools.accumulate(input_sizes))[:-1], axis=-1)
    outputs = [
        MLP((width,), activation, compute_dtype, kernel_init, name=f"branch_{i}")(part)
        for i, part in enumerate(parts)
    ]
    return jnp.concatenate(outputs, axis=-1)


class MLPDecoder(nn.Module):
    """z -> dense layers -> raw pixel parameters -> p(x|z).

    With ``input_sizes`` (the sizes of the layers ``z`` concatenates: a decoder reading
    every stochastic layer, ``p(x | z_1, z_2)`` of the VampPrior code's HVAE), the first
    dense layer is one branch per part of ``z``, their outputs concatenated.
    """

    hidden_sizes: Sequence[int]
    head: likelihoods.ObservationHead
    activation: str = "relu"
    compute_dtype: str = "float32"
    kernel_init: str = "lecun_normal"
    input_sizes: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, z: jax.Array):
        sizes = tuple(self.hidden_sizes)
        if self.input_sizes:
            z = _branches(z, self.input_sizes, sizes[0], self.activation, self.compute_dtype,
                          self.kernel_init)  # fmt: skip
            sizes = sizes[1:]
        h = MLP(sizes, self.activation, self.compute_dtype, self.kernel_init, name="mlp")(z)
        height, width, channels = self.head.image_shape
        out_channels = likelihoods.raw_channels(
            self.head.likelihood, self.head.gaussian_scale, channels
        )
        dense = precision.layer_options(self.compute_dtype)["dense"]
        init = get_kernel_init(self.kernel_init)
        raw = nn.Dense(height * width * out_channels, name="pixels", kernel_init=init, **dense)(h)
        return self.head(raw.reshape((*raw.shape[:-1], height, width, out_channels)))


class ConvEncoder(nn.Module):
    """Strided 3x3 convolutions (each halves the resolution) -> dense layers -> ``Encoded``."""

    conv_channels: Sequence[int]
    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"
    compute_dtype: str = "float32"
    context_dim: int = 0  # > 0: also a context vector (a flow's input, a ladder's d_1)

    @nn.compact
    def __call__(self, x: jax.Array):
        act = get_activation(self.activation)
        conv = precision.layer_options(self.compute_dtype)["conv"]
        h = x
        for i, channels in enumerate(self.conv_channels):
            layer = nn.Conv(
                channels, (3, 3), strides=(2, 2), padding="SAME", name=f"conv_{i}",
                kernel_init=conv_kernel_init, **conv,
            )  # fmt: skip
            h = act(layer(h))
        h = MLP(self.hidden_sizes, self.activation, self.compute_dtype, name="mlp")(
            _flatten_image(h)
        )
        return GaussianLatentHead(
            self.latent_dim, self.compute_dtype, self.context_dim, name="head"
        )(h)


class GatedConvStack(nn.Module):
    """Gated convolutions ``(channels, kernel, stride, padding)`` in turn; ``flatten``: the
    output as one vector per image (``h.view(x.size(0), -1)``)."""

    layers: tuple[tuple[int, int, int, int], ...]
    compute_dtype: str = "float32"
    flatten: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for i, (channels, kernel, stride, padding) in enumerate(self.layers):
            h = GatedConv(channels, kernel, stride, padding, self.compute_dtype, name=f"conv_{i}")(
                h
            )
        return _flatten_image(h) if self.flatten else h


class GatedConvEncoder(nn.Module):
    """``gated_conv``'s encoder: ``GATED_CONV_ENCODER`` -> flattened -> ``Encoded``."""

    latent_dim: int
    compute_dtype: str = "float32"
    context_dim: int = 0
    kernel_init: str = "lecun_normal"
    log_variance_range: tuple[float, ...] = ()

    @nn.compact
    def __call__(self, x: jax.Array):
        h = GatedConvStack(GATED_CONV_ENCODER, self.compute_dtype, name="convs")(x)
        return GaussianLatentHead(
            self.latent_dim, self.compute_dtype, self.context_dim, self.kernel_init,
            tuple(self.log_variance_range), name="head",
        )(h)  # fmt: skip


class GatedConvDecoder(nn.Module):
    """``gated_conv``'s decoder: a gated dense layer of ``hidden_sizes[0]`` units (one per
    input part, concatenated) -> a gated dense layer to one value per pixel, seen as an
    image -> ``GATED_CONV_DECODER`` -> a 1x1 convolution to the raw pixel parameters."""

    hidden_sizes: Sequence[int]
    head: likelihoods.ObservationHead
    compute_dtype: str = "float32"
    kernel_init: str = "lecun_normal"
    input_sizes: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, z: jax.Array):
        height, width, channels = self.head.image_shape
        first = tuple(self.hidden_sizes)[:1]
        sizes = (*first, height * width * channels)
        if self.input_sizes:  # p_x_layers_z1, p_x_layers_z2, then p_x_layers_joint_pre
            z = _branches(z, self.input_sizes, first[0], GATED, self.compute_dtype,
                          self.kernel_init)  # fmt: skip
            sizes = sizes[1:]
        h = MLP(sizes, GATED, self.compute_dtype, self.kernel_init, name="mlp")(z)
        h = h.reshape((*h.shape[:-1], height, width, channels))
        h = GatedConvStack(GATED_CONV_DECODER, self.compute_dtype, flatten=False, name="convs")(h)
        out_channels = likelihoods.raw_channels(
            self.head.likelihood, self.head.gaussian_scale, channels
        )
        conv = precision.layer_options(self.compute_dtype)["conv"]
        raw = nn.Conv(out_channels, (1, 1), name="pixels", kernel_init=conv_kernel_init, **conv)(h)
        return self.head(raw)


def _upsample(channels: int, name: str, compute_dtype: str) -> nn.ConvTranspose:
    """A 3x3 transposed convolution that doubles the resolution."""
    options = precision.layer_options(compute_dtype)["conv_transpose"]
    return nn.ConvTranspose(
        channels, (3, 3), strides=(2, 2), padding="SAME", name=name,
        kernel_init=conv_kernel_init, **options,
    )  # fmt: skip


class ConvDecoder(nn.Module):
    """z -> dense layers -> a coarse feature map -> strided transposed convolutions, each
    doubling the resolution, the last one producing the raw pixel parameters -> p(x|z)."""

    conv_channels: Sequence[int]  # as in the encoder; the decoder mirrors them
    hidden_sizes: Sequence[int]
    head: likelihoods.ObservationHead
    activation: str = "relu"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, z: jax.Array):
        act = get_activation(self.activation)
        height, width, channels = self.head.image_shape
        factor = 2 ** len(self.conv_channels)
        base_height, base_width = height // factor, width // factor
        h = MLP(self.hidden_sizes, self.activation, self.compute_dtype, name="mlp")(z)
        first = self.conv_channels[-1]
        dense = precision.layer_options(self.compute_dtype)["dense"]
        h = act(nn.Dense(base_height * base_width * first, name="to_grid", **dense)(h))
        h = h.reshape((*h.shape[:-1], base_height, base_width, first))
        for i, ch in enumerate(reversed(self.conv_channels[:-1])):
            h = act(_upsample(ch, f"deconv_{i}", self.compute_dtype)(h))
        out_channels = likelihoods.raw_channels(
            self.head.likelihood, self.head.gaussian_scale, channels
        )
        raw = _upsample(out_channels, "pixels", self.compute_dtype)(h)
        return self.head(raw)


def make_networks(
    *,
    architecture: str,
    hidden_sizes: Sequence[int],
    conv_channels: Sequence[int],
    latent_dim: int,
    activation: str,
    head: likelihoods.ObservationHead,
    compute_dtype: str,
    context_dim: int = 0,
    kernel_init: str = "lecun_normal",
    log_variance_range: Sequence[float] = (),
    decoder_input_sizes: Sequence[int] = (),
) -> tuple[nn.Module, nn.Module]:
    """The encoder and the decoder of ``architecture``; the decoder mirrors the encoder.

    Args:
      architecture: one of ``ARCHITECTURES``.
      hidden_sizes: the encoder's dense widths.
      conv_channels: ``conv``: channels of the strided convolutions.
      latent_dim: dimension of the layer the encoder describes and the decoder reads.
      activation: one of ``ACTIVATIONS``.
      head: the observation model's head (``vae_jax.core.likelihoods``).
      compute_dtype: precision of the products (``vae_jax.core.precision``).
      context_dim: width of the context the encoder computes beside q (0: none).
      kernel_init: ``mlp``: initializer of the dense kernels, one of ``KERNEL_INITS``.
      log_variance_range: ``mlp``: ``(low, high)``: q's head predicts a log-variance
        clipped to it (the VampPrior code's); empty: a free log-scale.
      decoder_input_sizes: ``mlp``: the parts of the decoder's input, one branch each
        (``MLPDecoder``); empty: one input.
    """
    hidden = tuple(hidden_sizes)
    get_kernel_init(kernel_init)
    if architecture == "mlp":
        encoder = MLPEncoder(
            hidden, latent_dim, activation, compute_dtype, context_dim, kernel_init,
            tuple(float(v) for v in log_variance_range),
        )  # fmt: skip
        decoder = MLPDecoder(
            hidden[::-1], head, activation, compute_dtype, kernel_init,
            tuple(int(d) for d in decoder_input_sizes),
        )  # fmt: skip
    elif architecture == "gated_conv":
        if activation != GATED:
            raise ValueError(f"model.architecture='gated_conv' is gated: set activation={GATED!r}")
        encoder = GatedConvEncoder(
            latent_dim, compute_dtype, context_dim, kernel_init,
            tuple(float(v) for v in log_variance_range),
        )  # fmt: skip
        decoder = GatedConvDecoder(
            hidden[::-1], head, compute_dtype, kernel_init,
            tuple(int(d) for d in decoder_input_sizes),
        )  # fmt: skip
    elif architecture == "conv":
        unsupported = {
            f"activation={GATED!r}": activation == GATED,
            f"kernel_init={kernel_init!r}": kernel_init != "lecun_normal",
            "a log_variance_range": bool(tuple(log_variance_range)),
            "a decoder reading every layer": bool(tuple(decoder_input_sizes)),
        }
        named = [name for name, on in unsupported.items() if on]
        if named:
            raise ValueError(f"model.architecture='conv' does not take {named[0]} (mlp does)")
        channels = tuple(conv_channels)
        encoder = ConvEncoder(channels, hidden, latent_dim, activation, compute_dtype, context_dim)
        decoder = ConvDecoder(channels, hidden[::-1], head, activation, compute_dtype)
    else:
        raise ValueError(f"model.architecture={architecture!r}; choose one of {ARCHITECTURES}")
    return encoder, decoder


def conv_downsampling_error(image_shape: Sequence[int], num_conv_layers: int) -> str | None:
    """Why a conv architecture cannot reconstruct this image size, or None if it can."""
    factor = 2**num_conv_layers
    if num_conv_layers < 1:
        return "needs at least one convolution layer"
    if image_shape[0] % factor or image_shape[1] % factor:
        return (
            f"image size {tuple(image_shape[:2])} is not divisible by 2**{num_conv_layers}="
            f"{factor} (one halving per conv layer)"
        )
    return None


def num_parameters(params) -> int:
    return int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))
