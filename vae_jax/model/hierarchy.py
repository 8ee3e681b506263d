"""Several stochastic layers: ``z = (z_1, ..., z_L)``, ``z_1`` next to the data.

The generative path is top-down for both kinds of hierarchy:

    p(z_L),   p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), sigma_l(z_{l+1})),   p(x | z_1),

with ``p(z_L)`` any prior component (``vae_jax.model.priors``: standard normal, a mixture,
the VampPrior of the top layer's posterior: Tomczak & Welling's "HVAE + VampPrior").

The posterior ``q(z|x)`` is one of:

* ``bottom_up`` (Burda et al., 2015): ``q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1})``, the
  path ``x -> h1 -> z1 -> h2 -> z2``; sampled from the bottom.
* ``top_down``, the ladder VAE (Sønderby et al., 2016): a deterministic bottom-up pass
  ``d_l = MLP(d_{l-1})`` gives ``N(mu_hat_l, sigma_hat_l)`` per layer; sampling runs
  top-down, ``q(z_L|x) = N(mu_hat_L, sigma_hat_L)`` and ``q(z_l | z_{l+1}, x)`` the
  precision-weighted merge of ``N(mu_hat_l, sigma_hat_l)`` with ``p(z_l | z_{l+1})``
  (``merge_gaussians``). q shares the generative path's networks.
* ``top_down_skip``, the two-level HVAE of Tomczak & Welling (2018; ``HVAE_2level.py`` in
  their code): ``q(z_L|x) prod_l q(z_l | x, z_{l+1})``. The encoder gives ``q(z_L|x)``;
  each lower layer's network reads the data through its own branch and ``z_{l+1}``
  through another, joined by dense layers (``SkipConditional``); sampled from the top.
  With it the decoder usually reads every layer (``make_vae(decoder_reads="all_layers")``).

``z_1``'s posterior is any posterior family (``vae_jax.model.posteriors``): the Gaussian
above, or an inverse autoregressive flow on top of it (Kingma et al., 2016, used IAF in
hierarchical models); the layers above ``z_1`` are Gaussians.

The model's latent vector is the concatenation ``(z_1, ..., z_L)``, so the ELBO, the IWAE
bound and evaluation treat it as any ``z``: the decoder reads ``z_1``, ``p(z)`` is the
product above and ``q(z|x)`` the product of its layers (known at any ``z`` unless ``z_1``'s
is a flow). Both offer one log-density block per layer (``vae_jax.model.contract``): the KL
has no closed form; per layer it is ``log q(z_l|.) - log p(z_l|z_{l+1})`` at the draws.

Keys: one draw of all layers splits its key in ``L``; layer ``l`` (1 = bottom) draws its
noise with ``split(key, L)[l - 1]``, whichever direction sampling runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vae_jax.core import distributions, networks, precision
from vae_jax.core.distributions.latent import DrawsThenDensity

INFERENCE = ("bottom_up", "top_down", "top_down_skip")


def check_inference(inference: str) -> None:
    if inference not in INFERENCE:
        raise ValueError(f"inference={inference!r}; choose one of {INFERENCE}")


def split_layers(z: jax.Array, latent_dims: Sequence[int]) -> list[jax.Array]:
    """``(..., sum(latent_dims))`` -> ``[z_1, ..., z_L]``, each ``(..., d_l)``."""
    return jnp.split(z, np.cumsum(latent_dims)[:-1], axis=-1)


def layer_sums(values, latent_dims: Sequence[int]) -> list:
    """Per-dimension values ``(..., sum(latent_dims))`` summed within each layer (numpy
    stays numpy, in its precision); inverts ``contract.spread_over_blocks`` over layers."""
    split = np.split if isinstance(values, np.ndarray) else jnp.split
    return [part.sum(axis=-1) for part in split(values, np.cumsum(latent_dims)[:-1], axis=-1)]


def merge_gaussians(
    bottom_up: distributions.DiagGaussian, top_down: distributions.DiagGaussian
) -> distributions.DiagGaussian:
    """The ladder VAE's posterior layer (Sønderby et al., 2016, eq. 17-19): the normalized
    product of the two Gaussians, precisions adding, ``sigma^-2 = sigma_hat^-2 +
    sigma_p^-2`` and ``mu = sigma^2 (mu_hat sigma_hat^-2 + mu_p sigma_p^-2)``."""
    log_precision_hat = -2.0 * bottom_up.log_scale
    log_precision_p = -2.0 * top_down.log_scale
    log_precision = jnp.logaddexp(log_precision_hat, log_precision_p)
    loc = bottom_up.loc * jnp.exp(log_precision_hat - log_precision) + top_down.loc * jnp.exp(
        log_precision_p - log_precision
    )
    return distributions.DiagGaussian(loc, -0.5 * log_precision)


# Scales above z_1 are softplus(raw + SCALE_OFFSET) + MIN_SCALE (Sønderby et al. use a
# softplus): they grow linearly, not exponentially, in the network's output, start near 1
# at raw = 0 and stay above MIN_SCALE. The heads' kernels start small (HEAD_INIT_SCALE),
# so that at initialization each layer is close to N(0, I) whatever the layer it reads:
# with exp(raw) and the default init a fresh two-layer model's ELBO reached -1e7 (a draw
# far out in one layer made the next layer's scale tiny).
MIN_SCALE = 1e-3
SCALE_OFFSET = float(np.log(np.expm1(1.0)))  # softplus(SCALE_OFFSET) = 1
HEAD_INIT_SCALE = 0.01  # variance scale of the heads' kernels (LeCun normal: 1)


class SoftplusGaussianHead(nn.Module):
    """Features -> ``DiagGaussian(loc, log(softplus(raw + SCALE_OFFSET) + MIN_SCALE))``."""

    latent_dim: int
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> distributions.DiagGaussian:
        dense = precision.layer_options(self.compute_dtype)["dense"]
        kernel_init = nn.initializers.variance_scaling(HEAD_INIT_SCALE, "fan_in", "normal")
        out = nn.Dense(2 * self.latent_dim, kernel_init=kernel_init, name="latent_params", **dense)(
            h
        )
        loc, raw = jnp.split(out, 2, axis=-1)
        return distributions.DiagGaussian(
            loc, jnp.log(jax.nn.softplus(raw + SCALE_OFFSET) + MIN_SCALE)
        )


def _head(module, h: jax.Array) -> distributions.DiagGaussian:
    """``module``'s Gaussian head: the softplus head, or with ``log_variance_range`` the
    VampPrior code's (``networks.GaussianLatentHead``)."""
    if module.log_variance_range:
        return networks.GaussianLatentHead(
            module.latent_dim, module.compute_dtype, 0, module.kernel_init,
            tuple(module.log_variance_range), name="head",
        )(h).gaussian  # fmt: skip
    return SoftplusGaussianHead(module.latent_dim, module.compute_dtype, name="head")(h)


class GaussianLayer(nn.Module):
    """A vector -> dense layers -> ``DiagGaussian``: ``p(z_l | z_{l+1})``, or with
    ``bottom_up`` inference ``q(z_l | z_{l-1})``."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"
    compute_dtype: str = "float32"
    kernel_init: str = "lecun_normal"
    log_variance_range: tuple[float, ...] = ()

    @nn.compact
    def __call__(self, h: jax.Array) -> distributions.DiagGaussian:
        h = networks.MLP(
            self.hidden_sizes, self.activation, self.compute_dtype, self.kernel_init, name="mlp"
        )(h)
        return _head(self, h)


class SkipConditional(nn.Module):
    """``top_down_skip``'s ``q(z_l | x, z_{l+1})``: the image through one dense layer
    (``read_data``, once per example; ``data_convs``: gated convolutions instead, flattened),
    ``z_{l+1}`` through another of the same width, their outputs concatenated and read by
    the remaining dense layers and a Gaussian head (``q_z1_layers_x``, ``q_z1_layers_z2``
    and ``q_z1_layers_joint`` of the VampPrior code)."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"
    compute_dtype: str = "float32"
    kernel_init: str = "lecun_normal"
    log_variance_range: tuple[float, ...] = ()
    data_convs: tuple[tuple[int, int, int, int], ...] = ()

    def _mlp(self, sizes, name):
        return networks.MLP(sizes, self.activation, self.compute_dtype, self.kernel_init, name=name)

    @nn.compact
    def read_data(self, image: jax.Array) -> jax.Array:
        if self.data_convs:
            return networks.GatedConvStack(self.data_convs, self.compute_dtype, name="data")(image)
        return self._mlp(tuple(self.hidden_sizes)[:1], "data")(
            image.reshape((*image.shape[:-3], -1))
        )

    @nn.compact
    def __call__(self, data_features: jax.Array, z_above: jax.Array):
        width = data_features.shape[-1] if self.data_convs else self.hidden_sizes[0]
        above = self._mlp((width,), "above")(z_above)
        batch = jnp.broadcast_shapes(above.shape[:-1], data_features.shape[:-1])
        h = self._mlp(tuple(self.hidden_sizes)[1:], "joint")(
            jnp.concatenate(
                [
                    jnp.broadcast_to(data_features, (*batch, data_features.shape[-1])),
                    jnp.broadcast_to(above, (*batch, above.shape[-1])),
                ],
                axis=-1,
            )
        )
        return _head(self, h)

    def initialize(self, x_flat: jax.Array, z_above: jax.Array):
        """Touches every layer (for ``init``)."""
        return self(self.read_data(x_flat), z_above)


class LadderStep(nn.Module):
    """``top_down`` inference: features ``d_{l-1}`` -> ``d_l = MLP(d_{l-1})`` and the
    bottom-up Gaussian ``N(mu_hat_l, sigma_hat_l)`` read from ``d_l``."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, d: jax.Array) -> tuple[distributions.DiagGaussian, jax.Array]:
        d = networks.MLP(self.hidden_sizes, self.activation, self.compute_dtype, name="mlp")(d)
        return SoftplusGaussianHead(self.latent_dim, self.compute_dtype, name="head")(d), d


def _per_layer_log_probs(distribution, z: jax.Array) -> list[jax.Array]:
    """Each layer's log-density at ``z`` given the other layers' values, ``[(...,)] * L``."""
    layers = split_layers(z, distribution.latent_dims)
    per_layer = [distribution.layer(i, layers).log_prob(layers[i]) for i in range(len(layers))]
    return jnp.broadcast_arrays(*per_layer)  # a layer may not depend on every batch axis


def _stack_blocks(per_layer: list[jax.Array]) -> jax.Array:
    """Per-layer log-densities ``[(...,)] * L`` -> ``(..., L)``, the contract's blocks."""
    return jnp.stack(per_layer, axis=-1)


class _ByLayer:
    """The densities of a distribution over the concatenated layers, from its ``layer(i,
    layers)``: one block per layer (a mixin of the prior and the posterior; no fields)."""

    @property
    def blocks(self) -> tuple[int, ...]:
        """One block per layer."""
        return self.latent_dims

    def layer_log_probs(self, z: jax.Array) -> jax.Array:
        """Each layer's log-density given the others at ``z``, shape ``(L, ...)``."""
        return jnp.stack(_per_layer_log_probs(self, z))

    def block_log_probs(self, z: jax.Array) -> jax.Array:
        return _stack_blocks(_per_layer_log_probs(self, z))

    def log_prob(self, z: jax.Array) -> jax.Array:
        return jnp.sum(self.layer_log_probs(z), axis=0)


@struct.dataclass
class HierarchicalPrior(_ByLayer, DrawsThenDensity):
    """``p(z) = p(z_L) prod_l p(z_l | z_{l+1})`` over the concatenated ``z``;
    ``conditional(params, l, z_above)`` is ``p(z_l | z_{l+1})`` (``l`` from 0 = bottom) and
    ``top`` is ``p(z_L)`` (standard normal, a mixture or the VampPrior)."""

    params: Any
    top: Any
    conditional: Callable = struct.field(pytree_node=False)
    latent_dims: tuple[int, ...] = struct.field(pytree_node=False)

    density_everywhere = True  # the latent contract (vae_jax.model.contract)

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(self.latent_dims),)

    def layer(self, index: int, layers: Sequence[jax.Array]):
        """``p(z_l | z_{l+1})`` given the layers' values (``top`` at the top)."""
        if index == len(self.latent_dims) - 1:
            return self.top
        return self.conditional(self.params, index, layers[index + 1])

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Ancestral draws from the top; layer ``l`` uses ``split(key, L)[l - 1]``."""
        keys = jax.random.split(key, len(self.latent_dims))
        top = len(self.latent_dims) - 1
        layers: list[Any] = [None] * len(self.latent_dims)
        layers[top] = self.layer(top, layers).sample(keys[top], tuple(sample_shape))
        for i in reversed(range(top)):
            layers[i] = self.layer(i, layers).sample(keys[i])
        return jnp.concatenate(layers, axis=-1)


@struct.dataclass
class HierarchicalPosterior(_ByLayer):
    """``q(z|x)`` over the concatenated ``z``.

    ``gaussians`` are what the encoder computed from ``x``: ``(q(z_1|x),)`` for
    ``bottom_up``; ``N(mu_hat_l, sigma_hat_l)`` of every layer for ``top_down``;
    ``(q(z_L|x),)`` for ``top_down_skip``. ``conditional(params, l, z_neighbour)`` is the
    network of layer ``l`` (0 = bottom): ``q(z_l | z_{l-1})`` for ``bottom_up``,
    ``p(z_l | z_{l+1})`` for ``top_down``; for ``top_down_skip`` it is
    ``conditional(params, l, z_above, features[l])``, ``features`` the data read once.
    ``z_1``'s Gaussian is wrapped by its posterior family, ``wrap(gaussian, context,
    family_params)`` (``vae_jax.model.posteriors``: itself, or a flow reading ``context``);
    the layers above are Gaussians. The density is known at any ``z`` when the family's is
    (``density_everywhere``), else at the posterior's own draws.
    """

    gaussians: tuple[distributions.DiagGaussian, ...]
    params: Any
    context: Any
    family_params: Any
    conditional: Callable = struct.field(pytree_node=False)
    latent_dims: tuple[int, ...] = struct.field(pytree_node=False)
    inference: str = struct.field(pytree_node=False)
    wrap: Callable = struct.field(pytree_node=False)
    density_everywhere: bool = struct.field(pytree_node=False, default=True)
    features: Any = None  # top_down_skip: each lower layer's reading of the data

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.gaussians[0].shape[:-1], sum(self.latent_dims))

    def _order(self) -> range:
        """Layers in sampling order: from the bottom (bottom_up) or the top (top_down)."""
        num = len(self.latent_dims)
        return range(num) if self.inference == "bottom_up" else range(num - 1, -1, -1)

    def _gaussian(self, index: int, layers: Sequence[jax.Array]) -> distributions.DiagGaussian:
        """Layer ``index``'s Gaussian given the values of the layers sampled before it."""
        if self.inference == "bottom_up":
            if index == 0:
                return self.gaussians[0]
            return self.conditional(self.params, index, layers[index - 1])
        if index == len(self.latent_dims) - 1:
            return self.gaussians[-1]
        if self.inference == "top_down_skip":
            return self.conditional(self.params, index, layers[index + 1], self.features[index])
        top_down = self.conditional(self.params, index, layers[index + 1])
        return merge_gaussians(self.gaussians[index], top_down)

    def layer(self, index: int, layers: Sequence[jax.Array]):
        """Layer ``index``'s posterior given the layers sampled before it (``z_1``'s through
        its family)."""
        gaussian = self._gaussian(index, layers)
        return self.wrap(gaussian, self.context, self.family_params) if index == 0 else gaussian

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        """Draws of every layer; layer ``l`` uses ``split(key, L)[l - 1]``; the first layer
        sampled takes ``sample_shape``."""
        keys = jax.random.split(key, len(self.latent_dims))
        layers: list[Any] = [None] * len(self.latent_dims)
        shape = tuple(sample_shape)
        for i in self._order():
            layers[i] = self.layer(i, layers).sample(keys[i], shape)
            shape = ()
        return jnp.concatenate(layers, axis=-1)

    def _draw(self, key: jax.Array, sample_shape: tuple[int, ...]):
        """``sample``'s draws and each layer's ``log q`` taken from its draw (what a flow
        layer offers)."""
        keys = jax.random.split(key, len(self.latent_dims))
        layers: list[Any] = [None] * len(self.latent_dims)
        log_probs: list[Any] = [None] * len(self.latent_dims)
        shape = tuple(sample_shape)
        for i in self._order():
            layers[i], log_probs[i] = self.layer(i, layers).sample_and_log_prob(keys[i], shape)
            shape = ()
        return jnp.concatenate(layers, axis=-1), log_probs

    def sample_and_log_prob(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Draws and ``log q`` at them: by the density at the draws where it is known
        everywhere, else from each layer's draw."""
        if self.density_everywhere:
            z = self.sample(key, sample_shape)
            return z, self.log_prob(z)
        z, log_probs = self._draw(key, sample_shape)
        return z, jnp.sum(jnp.stack(log_probs), axis=0)

    def sample_and_block_log_probs(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        if self.density_everywhere:
            z = self.sample(key, sample_shape)
            return z, self.block_log_probs(z)
        z, log_probs = self._draw(key, sample_shape)
        return z, _stack_blocks(log_probs)

    def _mean_path(self) -> list[distributions.DiagGaussian]:
        """Each layer's summary Gaussian with the layers it depends on at their central
        points (their means; a flow layer's image of its base mean)."""
        layers: list[Any] = [None] * len(self.latent_dims)
        gaussians: list[Any] = [None] * len(self.latent_dims)
        for i in self._order():
            layer = self.layer(i, layers)
            gaussians[i] = layer.summary_gaussian()
            layers[i] = layer.central_point()
        return gaussians

    def summary_gaussian(self) -> distributions.DiagGaussian:
        """The layers' Gaussians along the mean path, concatenated: a central point of q
        (exact for the first layer sampled), the Gaussian the latent diagnostics describe."""
        path = self._mean_path()
        return distributions.DiagGaussian(
            jnp.concatenate([g.mean() for g in path], axis=-1),
            jnp.concatenate([jnp.broadcast_to(g.log_scale, g.shape) for g in path], axis=-1),
        )

    def central_point(self) -> jax.Array:
        return self.summary_gaussian().loc

    def top_gaussian(self) -> distributions.DiagGaussian:
        """``q(z_L | .)``, the top layer's Gaussian: exactly ``q(z_L|x)`` for ``top_down``
        and ``top_down_skip``; for ``bottom_up`` along the mean path (the layers below at
        their central points). The VampPrior of a hierarchy mixes these at its pseudo-inputs."""
        if self.inference != "bottom_up":
            return self.gaussians[-1]
        return self._mean_path()[-1]

    @property
    def loc(self) -> jax.Array:
        """The layers' means along the mean path (see ``summary_gaussian``)."""
        return self.summary_gaussian().loc

    @property
    def log_scale(self) -> jax.Array:
        """The layers' log-scales along the mean path (see ``summary_gaussian``)."""
        return self.summary_gaussian().log_scale


class Hierarchy:
    """The networks above ``z_1`` and how they make ``p(z)`` and ``q(z|x)``.

    Args:
      latent_dims: ``(d_1, ..., d_L)``, ``L >= 2``.
      inference: ``"bottom_up"`` or ``"top_down"``.
      hidden_sizes: dense widths of each network between two stochastic layers.
      feature_size: ``top_down``: width of the encoder's features ``d_1``.
      activation, compute_dtype, kernel_init, log_variance_range: as the encoder's.
      data_shape: ``top_down_skip``: the shape of one encoder input.
      data_convs: ``top_down_skip``: gated convolutions reading it (``SkipConditional``).
    """

    def __init__(
        self,
        *,
        latent_dims: Sequence[int],
        inference: str,
        hidden_sizes: Sequence[int],
        feature_size: int,
        activation: str,
        compute_dtype: str,
        kernel_init: str = "lecun_normal",
        log_variance_range: Sequence[float] = (),
        data_shape: Sequence[int] = (),
        data_convs: Sequence[Sequence[int]] = (),
    ):
        check_inference(inference)
        self.latent_dims = tuple(int(d) for d in latent_dims)
        if len(self.latent_dims) < 2:
            raise ValueError(f"a hierarchy needs >= 2 layers, got latent_dims={latent_dims}")
        self.inference, self.feature_size = inference, int(feature_size)
        self.data_shape = tuple(int(d) for d in data_shape)
        hidden = tuple(int(h) for h in hidden_sizes)
        above = range(1, len(self.latent_dims))
        heads = (kernel_init, tuple(float(v) for v in log_variance_range))
        # p(z_l | z_{l+1}) for l = 1..L-1 (index l - 1); the inference networks of layers
        # 2..L (bottom_up, top_down) or 1..L-1 (top_down_skip: z_L's is the encoder).
        self.generative = [
            GaussianLayer(hidden, self.latent_dims[i - 1], activation, compute_dtype, *heads)
            for i in above
        ]
        if inference == "top_down_skip":
            convs = tuple(tuple(int(v) for v in layer) for layer in data_convs)
            self.inference_steps = [
                SkipConditional(
                    hidden, self.latent_dims[i - 1], activation, compute_dtype, *heads, convs
                )
                for i in above
            ]
        elif inference == "bottom_up":
            self.inference_steps = [
                GaussianLayer(hidden, self.latent_dims[i], activation, compute_dtype, *heads)
                for i in above
            ]
        else:
            self.inference_steps = [
                LadderStep(hidden, self.latent_dims[i], activation, compute_dtype) for i in above
            ]

    def init(self, key: jax.Array) -> dict:
        """Parameters ``{"generative": {"layer_l": ...}, "inference": {"layer_l": ...}}``;
        ``split(key, 2 (L - 1))``: the generative networks' keys first, bottom up."""
        keys = iter(jax.random.split(key, 2 * (len(self.latent_dims) - 1)))
        generative, inference = {}, {}
        for i, net in enumerate(self.generative):  # p(z_{i+1} | z_{i+2}) reads layer i + 2
            z_above = jnp.zeros((1, self.latent_dims[i + 1]))
            generative[f"layer_{i + 1}"] = net.init(next(keys), z_above)["params"]
        if self.inference == "top_down_skip":
            for i, net in enumerate(self.inference_steps):  # q(z_{i+1} | x, z_{i+2})
                data = jnp.zeros((1, *self.data_shape))
                z_above = jnp.zeros((1, self.latent_dims[i + 1]))
                inference[f"layer_{i + 1}"] = net.init(
                    next(keys), data, z_above, method=SkipConditional.initialize
                )["params"]
            return {"generative": generative, "inference": inference}
        for i, net in enumerate(self.inference_steps):  # layer i + 2's network
            below = jnp.zeros((1, self._inference_input_width(i)))
            inference[f"layer_{i + 2}"] = net.init(next(keys), below)["params"]
        return {"generative": generative, "inference": inference}

    def _inference_input_width(self, index: int) -> int:
        """What inference step ``index`` (layer ``index + 2``) reads: ``z_{index+1}``
        (bottom_up), or the encoder's features ``d_1`` then the previous step's (top_down)."""
        if self.inference == "bottom_up":
            return self.latent_dims[index]
        return self.feature_size if index == 0 else self.inference_steps[index - 1].hidden_sizes[-1]

    def _conditional_prior(self, params: dict, index: int, z_above: jax.Array):
        net = self.generative[index]
        return net.apply({"params": params["generative"][f"layer_{index + 1}"]}, z_above)

    def _upward(self, params: dict, index: int, z_below: jax.Array):
        net = self.inference_steps[index - 1]
        return net.apply({"params": params["inference"][f"layer_{index + 1}"]}, z_below)

    def _skip_conditional(self, params: dict, index: int, z_above: jax.Array, features):
        net = self.inference_steps[index]
        return net.apply({"params": params["inference"][f"layer_{index + 1}"]}, features, z_above)

    def prior(self, params: dict, top) -> HierarchicalPrior:
        """``p(z)`` from the hierarchy's parameters, with ``top`` as ``p(z_L)``."""
        return HierarchicalPrior(params, top, self._conditional_prior, self.latent_dims)

    def posterior(
        self, params: dict, encoded, family, family_params: Any = None, data: Any = None
    ) -> HierarchicalPosterior:
        """``q(z|x)`` from the encoder's output ``encoded`` (``networks.Encoded``): its
        Gaussian is ``q(z_1|x)`` (``bottom_up``), or ``N(mu_hat_1, sigma_hat_1)`` with its
        context ``d_1`` which the ladder steps carry up (``top_down``), or ``q(z_L|x)``
        (``top_down_skip``, whose lower layers also read ``data``, the encoder's input).
        ``family`` (``vae_jax.model.posteriors``) wraps ``z_1``'s Gaussian, reading
        ``encoded.context``.
        """
        gaussians, features = [encoded.gaussian], None
        if self.inference == "top_down_skip":
            conditional = self._skip_conditional
            features = tuple(
                step.apply(
                    {"params": params["inference"][f"layer_{i + 1}"]},
                    data,
                    method=SkipConditional.read_data,
                )
                for i, step in enumerate(self.inference_steps)
            )
        elif self.inference == "bottom_up":
            conditional = self._upward
        else:
            conditional, ladder = self._conditional_prior, encoded.context
            for i, step in enumerate(self.inference_steps):
                gaussian, ladder = step.apply(
                    {"params": params["inference"][f"layer_{i + 2}"]}, ladder
                )
                gaussians.append(gaussian)
        return HierarchicalPosterior(
            tuple(gaussians),
            params,
            encoded.context,
            {} if family_params is None else family_params,
            conditional,
            self.latent_dims,
            self.inference,
            family.wrap,
            family.capabilities.density_everywhere,
            features,
        )
