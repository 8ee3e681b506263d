"""The one contract every latent distribution of the model keeps, and what a part declares.

A posterior ``q(z|x)`` (a diagonal Gaussian, an inverse autoregressive flow, a hierarchy of
layers) and a prior ``p(z)`` (standard normal, a mixture, the VampPrior, a hierarchy's
top-down product) are immutable pytrees with the methods of ``LatentDistribution``
(distrax's contract: ``sample_and_log_prob(key, sample_shape)``, ``log_prob``). The bounds
(``vae_jax.model.bounds``), the objectives and evaluation call these methods and read the
declared ``Capabilities``; they never ask a part what it is called or what class it is.

Log-densities also come by *blocks*: ``blocks`` are the sizes of consecutive groups of
coordinates over which the density factorizes (one block per dimension for a diagonal
Gaussian, one per stochastic layer for a hierarchy, one block for a flow or a mixture), and
``block_log_probs(z)`` gives one log-density per block, shape ``(..., len(blocks))``. The
ELBO's KL is reported per block and shared equally among the block's dimensions
(``spread_over_blocks``), so a KL per dimension exists exactly when both ``q`` and ``p``
have one block per dimension.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp


class Capabilities(NamedTuple):
    """What a part can do, declared with the part and known before anything is built.

    Attributes:
      density_everywhere: ``log_prob(z)`` is known at any ``z``; otherwise only at the
        part's own draws (``sample_and_log_prob``), as for a flow (Kingma et al., 2016).
      diagonal_gaussian: the distribution is one diagonal Gaussian over all of ``z``, so
        the KL between two such parts has a closed form.
      per_dimension: the log-density factorizes over dimensions (one block each), so the
        KL has a value per latent dimension (free bits, diagnostics).
    """

    density_everywhere: bool = True
    diagonal_gaussian: bool = False
    per_dimension: bool = False


class LatentDistribution(Protocol):
    """The methods a latent distribution offers; see the module docstring.

    ``sample(key, sample_shape)`` and ``sample_and_log_prob(key, sample_shape)`` draw
    ``sample_shape + batch_shape + (D,)`` with the one key (jax.random's semantics; the
    bounds derive one key per draw, ``fold_in(key, s)``). ``log_prob`` and
    ``block_log_probs`` at any ``z`` exist where ``density_everywhere``.
    """

    density_everywhere: bool

    @property
    def blocks(self) -> tuple[int, ...]: ...

    def sample(self, key: jax.Array, sample_shape: tuple[int, ...] = ()) -> jax.Array: ...

    def sample_and_log_prob(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]: ...

    def sample_and_block_log_probs(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]: ...

    def log_prob(self, z: jax.Array) -> jax.Array: ...

    def block_log_probs(self, z: jax.Array) -> jax.Array: ...


def per_dimension_blocks(latent_dim: int) -> tuple[int, ...]:
    """One block per dimension: a density that factorizes over coordinates."""
    return (1,) * int(latent_dim)


def spread_over_blocks(values: jax.Array, blocks: Sequence[int]) -> jax.Array:
    """``(..., len(blocks))`` values per block -> ``(..., sum(blocks))``: each block's value
    shared equally among its dimensions (summing a block's dimensions gives it back)."""
    if all(size == 1 for size in blocks):
        return values
    if len(blocks) == 1:
        return jnp.broadcast_to(values / blocks[0], (*values.shape[:-1], blocks[0]))
    return jnp.concatenate(
        [
            jnp.broadcast_to(values[..., i, None] / size, (*values.shape[:-1], size))
            for i, size in enumerate(blocks)
        ],
        axis=-1,
    )


def log_prob_on_blocks(p: LatentDistribution, z: jax.Array, blocks: Sequence[int]) -> jax.Array:
    """``log p(z)`` expressed on the blocks ``blocks`` of another distribution (q's).

    Where the blocks agree, ``p``'s own block log-densities; a block of ``blocks`` that
    spans all of ``z`` takes ``log p(z)``; where ``p`` has one block and ``blocks`` are
    finer, each block takes its share ``log p(z) * size / D``. Other partitions do not arise
    from the builder's parts and are refused.
    """
    blocks = tuple(blocks)
    if tuple(p.blocks) == blocks:
        return p.block_log_probs(z)
    if len(blocks) == 1:
        return p.log_prob(z)[..., None]
    if len(p.blocks) == 1:
        sizes = jnp.asarray(blocks, jnp.float32)
        return p.log_prob(z)[..., None] * sizes / float(sum(blocks))
    raise ValueError(f"blocks {blocks} and the prior's blocks {tuple(p.blocks)} do not nest")
