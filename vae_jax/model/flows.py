"""Inverse autoregressive flow posteriors (Kingma et al., 2016).

``q(z|x)`` is a diagonal Gaussian pushed through ``T`` invertible steps. Step ``t`` is

    (m, s) = MADE_t(z, h),   sigma = sigmoid(s + GATE_BIAS),   z <- sigma * z + (1 - sigma) * m,

where ``MADE_t`` is a masked autoencoder (Germain et al., 2015): output ``d`` depends on
the coordinates of ``z`` before ``d`` in the step's order (reversed every other step) and
on the context ``h`` the encoder computes beside the Gaussian's parameters. The Jacobian is
triangular with diagonal ``sigma``, so ``log det = sum_d log sigma_d`` and

    log q(z_T | x) = log N(z_0; mu, sigma_0) - sum_t sum_d log sigma_t,d.

The density is known at the flow's own draws only (inverting the flow would take D
sequential passes), so the posterior offers ``sample_and_log_prob(key, sample_shape)``; the
ELBO and the IWAE bound use it, and their Monte Carlo KL is the only KL. The flow can be
the posterior of a one-layer model or of ``z_1`` in a hierarchy
(``vae_jax.model.posteriors``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct

from vae_jax.core import distributions, precision

# sigma starts near sigmoid(1) = 0.73: each step starts close to the identity-plus-shift
# that keeps gradients flowing (Kingma et al. use a positive forget-gate bias too).
GATE_BIAS = 1.0


def made_masks(latent_dim: int, hidden_size: int, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """MADE's masks ``(D, H)`` and ``(H, D)``: hidden unit ``k`` sees the inputs of degree
    ``<= deg(k)``; output ``d`` sees the hidden units of degree ``< deg(d)``, so it depends
    on the inputs before ``d`` in the order only. Degrees are ``1..D`` (``D..1`` reversed)."""
    input_degrees = np.arange(1, latent_dim + 1)
    if reverse:
        input_degrees = input_degrees[::-1]
    hidden_degrees = np.arange(hidden_size) % max(latent_dim - 1, 1) + 1
    hidden_mask = hidden_degrees[None, :] >= input_degrees[:, None]
    output_mask = input_degrees[None, :] > hidden_degrees[:, None]
    return hidden_mask.astype(np.float32), output_mask.astype(np.float32)


class MADE(nn.Module):
    """``(z, h) -> (m, s)``, each output ``d`` a function of ``h`` and ``z`` before ``d``.

    ``compute_dtype`` (``model.compute_dtype``): operands of its three products (masked
    input, context, masked outputs), accumulated in float32 (``vae_jax.core.precision``);
    the masks are applied to the float32 kernels first, so masked weights stay exact zeros.
    ``"float32"`` computes exactly as before the option existed."""

    latent_dim: int
    hidden_size: int
    reverse: bool = False
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(self, z: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        hidden_mask, output_mask = made_masks(self.latent_dim, self.hidden_size, self.reverse)
        if self.compute_dtype == "float32":
            matmul = jnp.matmul
        else:
            matmul = precision.mixed_matmul(self.compute_dtype)
        dense = precision.layer_options(self.compute_dtype)["dense"]
        init = nn.initializers.lecun_normal()
        w_in = self.param("w_in", init, (self.latent_dim, self.hidden_size))
        context_part = nn.Dense(self.hidden_size, name="context", **dense)(context)
        hidden = nn.elu(matmul(z, w_in * hidden_mask) + context_part)
        outputs = []
        for name in ("m", "s"):
            w = self.param(f"w_{name}", init, (self.hidden_size, self.latent_dim))
            b = self.param(f"b_{name}", nn.initializers.zeros, (self.latent_dim,))
            outputs.append(matmul(hidden, w * output_mask) + b)
        return outputs[0], outputs[1]


class IAF(nn.Module):
    """``num_steps`` IAF steps: ``(z_0, h) -> (z_T, sum of log-determinants)``."""

    latent_dim: int
    num_steps: int
    hidden_size: int
    compute_dtype: str = "float32"  # of every MADE's products (MADE's docstring)

    @nn.compact
    def __call__(self, z: jax.Array, context: jax.Array) -> tuple[jax.Array, jax.Array]:
        log_det = jnp.zeros(z.shape[:-1], z.dtype)
        for t in range(self.num_steps):
            made = MADE(
                self.latent_dim,
                self.hidden_size,
                reverse=t % 2 == 1,
                compute_dtype=self.compute_dtype,
                name=f"made_{t}",
            )
            m, s = made(z, context)
            gate = s + GATE_BIAS
            sigma = jax.nn.sigmoid(gate)
            z = sigma * z + (1.0 - sigma) * m
            log_det = log_det + jnp.sum(jax.nn.log_sigmoid(gate), axis=-1)
        return z, log_det


@struct.dataclass
class IAFPosterior:
    """``q(z|x)``: the Gaussian ``base`` pushed through the flow ``apply_flow(flow_params,
    z_0, context) -> (z_T, log_det)``. Reparameterized: draws are differentiable in every
    parameter. Its density is known at its own draws only (``density_everywhere`` False):
    ``log_prob`` at another ``z`` would need the flow's inverse."""

    base: distributions.DiagGaussian
    context: jax.Array
    flow_params: Any
    apply_flow: Callable = struct.field(pytree_node=False)

    density_everywhere = False  # the latent contract (vae_jax.model.contract)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.base.shape

    @property
    def blocks(self) -> tuple[int, ...]:
        """One block: the flow mixes every dimension."""
        return self.shape[-1:]

    @property
    def loc(self) -> jax.Array:
        """The flow's image of the base mean (a central point of q, not its mean)."""
        return self.apply_flow(self.flow_params, self.base.mean(), self.context)[0]

    def central_point(self) -> jax.Array:
        return self.loc

    def summary_gaussian(self) -> distributions.DiagGaussian:
        """The Gaussian latent diagnostics describe: the flow's base."""
        return self.base

    def sample_and_log_prob(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """Draws ``z_T`` (``eps`` from ``key`` as the base Gaussian draws it) and
        ``log q(z_T|x) = log N(z_0) - log det`` by the change of variables."""
        z0 = self.base.sample(key, sample_shape)
        z, log_det = self.apply_flow(self.flow_params, z0, self.context)
        return z, self.base.log_prob(z0) - log_det

    def sample_and_block_log_probs(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        z, log_q = self.sample_and_log_prob(key, sample_shape)
        return z, log_q[..., None]

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array:
        return self.sample_and_log_prob(key, sample_shape)[0]

    def log_prob(self, z: jax.Array) -> jax.Array:
        raise NotImplementedError(
            "an IAF posterior's density is known at its own draws only: use sample_and_log_prob"
        )

    def block_log_probs(self, z: jax.Array) -> jax.Array:
        return self.log_prob(z)
