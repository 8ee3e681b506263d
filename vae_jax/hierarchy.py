"""Several stochastic layers: ``z = (z_1, ..., z_L)``, ``z_1`` next to the data.

The generative path is top-down for both kinds of hierarchy:

    p(z_L) = N(0, I),   p(z_l | z_{l+1}) = N(mu_l(z_{l+1}), sigma_l(z_{l+1})),   p(x | z_1).

The posterior ``q(z|x)`` is one of:

* ``bottom_up`` (Burda et al., 2015): ``q(z_1|x) q(z_2|z_1) ... q(z_L|z_{L-1})``, the
  path ``x -> h1 -> z1 -> h2 -> z2``; sampled from the bottom.
* ``top_down``, the ladder VAE (Sønderby et al., 2016): a deterministic bottom-up pass
  ``d_l = MLP(d_{l-1})`` gives ``N(mu_hat_l, sigma_hat_l)`` per layer; sampling runs
  top-down, ``q(z_L|x) = N(mu_hat_L, sigma_hat_L)`` and ``q(z_l | z_{l+1}, x)`` the
  precision-weighted merge of ``N(mu_hat_l, sigma_hat_l)`` with ``p(z_l | z_{l+1})``
  (``merge_gaussians``). q shares the generative path's networks.

The model's latent vector is the concatenation ``(z_1, ..., z_L)``, so the ELBO, the IWAE
bound and evaluation treat it as any ``z``: the decoder reads ``z_1``, ``p(z)`` is the
product above and ``q(z|x)`` the product of its layers, both known at any ``z``. The KL
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

from vae_jax import distributions, networks, precision

INFERENCE = ("bottom_up", "top_down")


def check_inference(inference: str) -> None:
    if inference not in INFERENCE:
        raise ValueError(f"inference={inference!r}; choose one of {INFERENCE}")


def split_layers(z: jax.Array, latent_dims: Sequence[int]) -> list[jax.Array]:
    """``(..., sum(latent_dims))`` -> ``[z_1, ..., z_L]``, each ``(..., d_l)``."""
    return jnp.split(z, np.cumsum(latent_dims)[:-1], axis=-1)


def spread_over_layers(per_layer: jax.Array, latent_dims: Sequence[int]) -> jax.Array:
    """``(L, ...)`` values per layer -> ``(..., sum(latent_dims))``: layer ``l``'s value
    shared equally among its ``d_l`` dimensions (``layer_sums`` inverts it)."""
    return jnp.concatenate(
        [
            jnp.broadcast_to(value[..., None] / d, (*value.shape, d))
            for value, d in zip(per_layer, latent_dims, strict=True)
        ],
        axis=-1,
    )


def layer_sums(values, latent_dims: Sequence[int]) -> list:
    """Per-dimension values ``(..., sum(latent_dims))`` summed within each layer (numpy
    stays numpy, in its precision)."""
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


class GaussianLayer(nn.Module):
    """A vector -> dense layers -> ``DiagGaussian``: ``p(z_l | z_{l+1})``, or with
    ``bottom_up`` inference ``q(z_l | z_{l-1})``."""

    hidden_sizes: Sequence[int]
    latent_dim: int
    activation: str = "relu"
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, h: jax.Array) -> distributions.DiagGaussian:
        h = networks.MLP(self.hidden_sizes, self.activation, self.compute_dtype, name="mlp")(h)
        return SoftplusGaussianHead(self.latent_dim, self.compute_dtype, name="head")(h)


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


@struct.dataclass
class HierarchicalPrior:
    """``p(z) = p(z_L) prod_l p(z_l | z_{l+1})`` over the concatenated ``z``;
    ``conditional(params, l, z_above)`` is ``p(z_l | z_{l+1})`` (``l`` from 0 = bottom)."""

    params: Any
    conditional: Callable = struct.field(pytree_node=False)
    latent_dims: tuple[int, ...] = struct.field(pytree_node=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (sum(self.latent_dims),)

    def layer(self, index: int, layers: Sequence[jax.Array]) -> distributions.DiagGaussian:
        """``p(z_l | z_{l+1})`` given the layers' values (``N(0, I)`` at the top)."""
        if index == len(self.latent_dims) - 1:
            return distributions.standard_normal((self.latent_dims[-1],))
        return self.conditional(self.params, index, layers[index + 1])

    def layer_log_probs(self, z: jax.Array) -> jax.Array:
        """``log p(z_l | z_{l+1})`` of every layer, shape ``(L, ...)``."""
        layers = split_layers(z, self.latent_dims)
        return jnp.stack([self.layer(i, layers).log_prob(layers[i]) for i in range(len(layers))])

    def log_prob(self, z: jax.Array) -> jax.Array:
        return jnp.sum(self.layer_log_probs(z), axis=0)

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
class HierarchicalPosterior:
    """``q(z|x)`` over the concatenated ``z``, with its density at any ``z``.

    ``gaussians`` are what the encoder computed from ``x``: ``(q(z_1|x),)`` for
    ``bottom_up``; ``N(mu_hat_l, sigma_hat_l)`` of every layer for ``top_down``.
    ``conditional(params, l, z_neighbour)`` is the network of layer ``l`` (0 = bottom):
    ``q(z_l | z_{l-1})`` for ``bottom_up``, ``p(z_l | z_{l+1})`` for ``top_down``.
    """

    gaussians: tuple[distributions.DiagGaussian, ...]
    params: Any
    conditional: Callable = struct.field(pytree_node=False)
    latent_dims: tuple[int, ...] = struct.field(pytree_node=False)
    inference: str = struct.field(pytree_node=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.gaussians[0].shape[:-1], sum(self.latent_dims))

    def _order(self) -> range:
        """Layers in sampling order: from the bottom (bottom_up) or the top (top_down)."""
        num = len(self.latent_dims)
        return range(num) if self.inference == "bottom_up" else range(num - 1, -1, -1)

    def layer(self, index: int, layers: Sequence[jax.Array]) -> distributions.DiagGaussian:
        """Layer ``index``'s Gaussian given the values of the layers sampled before it."""
        if self.inference == "bottom_up":
            if index == 0:
                return self.gaussians[0]
            return self.conditional(self.params, index, layers[index - 1])
        if index == len(self.latent_dims) - 1:
            return self.gaussians[index]
        top_down = self.conditional(self.params, index, layers[index + 1])
        return merge_gaussians(self.gaussians[index], top_down)

    def sample(self, key: jax.Array) -> jax.Array:
        """One draw of every layer; layer ``l`` uses ``split(key, L)[l - 1]``."""
        keys = jax.random.split(key, len(self.latent_dims))
        layers: list[Any] = [None] * len(self.latent_dims)
        for i in self._order():
            layers[i] = self.layer(i, layers).sample(keys[i])
        return jnp.concatenate(layers, axis=-1)

    def layer_log_probs(self, z: jax.Array) -> jax.Array:
        """``log q(z_l | .)`` of every layer at ``z``, shape ``(L, ...)``."""
        layers = split_layers(z, self.latent_dims)
        return jnp.stack([self.layer(i, layers).log_prob(layers[i]) for i in range(len(layers))])

    def log_prob(self, z: jax.Array) -> jax.Array:
        return jnp.sum(self.layer_log_probs(z), axis=0)

    def sample_and_log_prob(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        z = self.sample(key)
        return z, self.log_prob(z)

    def _mean_path(self) -> list[distributions.DiagGaussian]:
        """Each layer's Gaussian with the layers it depends on at their means."""
        layers: list[Any] = [None] * len(self.latent_dims)
        gaussians: list[Any] = [None] * len(self.latent_dims)
        for i in self._order():
            gaussians[i] = self.layer(i, layers)
            layers[i] = gaussians[i].mean()
        return gaussians

    @property
    def loc(self) -> jax.Array:
        """The layers' means along the mean path (each layer's mean with the layers it
        depends on at their means): a central point of q, exact for the first layer
        sampled; the diagnostics' ``E_q[z|x]``."""
        return jnp.concatenate([g.mean() for g in self._mean_path()], axis=-1)

    @property
    def log_scale(self) -> jax.Array:
        """The layers' log-scales along the mean path (see ``loc``)."""
        return jnp.concatenate(
            [jnp.broadcast_to(g.log_scale, g.shape) for g in self._mean_path()], axis=-1
        )


class Hierarchy:
    """The networks above ``z_1`` and how they make ``p(z)`` and ``q(z|x)``.

    Args:
      latent_dims: ``(d_1, ..., d_L)``, ``L >= 2``.
      inference: ``"bottom_up"`` or ``"top_down"``.
      hidden_sizes: dense widths of each network between two stochastic layers.
      feature_size: ``top_down``: width of the encoder's features ``d_1``.
      activation, compute_dtype: as the encoder's.
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
    ):
        check_inference(inference)
        self.latent_dims = tuple(int(d) for d in latent_dims)
        if len(self.latent_dims) < 2:
            raise ValueError(f"a hierarchy needs >= 2 layers, got latent_dims={latent_dims}")
        self.inference, self.feature_size = inference, int(feature_size)
        hidden = tuple(int(h) for h in hidden_sizes)
        above = range(1, len(self.latent_dims))
        # p(z_l | z_{l+1}) for l = 1..L-1 (index l - 1); the inference networks of layers 2..L.
        self.generative = [
            GaussianLayer(hidden, self.latent_dims[i - 1], activation, compute_dtype) for i in above
        ]
        step = GaussianLayer if inference == "bottom_up" else LadderStep
        self.inference_steps = [
            step(hidden, self.latent_dims[i], activation, compute_dtype) for i in above
        ]

    def init(self, key: jax.Array) -> dict:
        """Parameters ``{"generative": {"layer_l": ...}, "inference": {"layer_l": ...}}``;
        ``split(key, 2 (L - 1))``: the generative networks' keys first, bottom up."""
        keys = iter(jax.random.split(key, 2 * (len(self.latent_dims) - 1)))
        generative, inference = {}, {}
        for i, net in enumerate(self.generative):  # p(z_{i+1} | z_{i+2}) reads layer i + 2
            z_above = jnp.zeros((1, self.latent_dims[i + 1]))
            generative[f"layer_{i + 1}"] = net.init(next(keys), z_above)["params"]
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

    def prior(self, params: dict) -> HierarchicalPrior:
        """``p(z)`` from the hierarchy's parameters."""
        return HierarchicalPrior(params, self._conditional_prior, self.latent_dims)

    def posterior(self, params: dict, encoded) -> HierarchicalPosterior:
        """``q(z|x)`` from the encoder's output: ``q(z_1|x)`` (``bottom_up``), or
        ``(N(mu_hat_1, sigma_hat_1), d_1)`` (``top_down``) which the ladder steps carry up."""
        if self.inference == "bottom_up":
            return HierarchicalPosterior(
                (encoded,), params, self._upward, self.latent_dims, self.inference
            )
        gaussian, features = encoded
        gaussians = [gaussian]
        for i, step in enumerate(self.inference_steps):
            gaussian, features = step.apply(
                {"params": params["inference"][f"layer_{i + 2}"]}, features
            )
            gaussians.append(gaussian)
        return HierarchicalPosterior(
            tuple(gaussians), params, self._conditional_prior, self.latent_dims, self.inference
        )
