"""The latent contract's draws with their densities (``vae_jax.model.contract``), for the
distributions whose density is known at any point: a draw by ``sample``, then its density."""

from __future__ import annotations

import jax


class DrawsThenDensity:
    """``sample_and_log_prob`` and ``sample_and_block_log_probs`` from ``sample``,
    ``log_prob`` and ``block_log_probs`` (a mixin of the dataclasses; no fields)."""

    def sample_and_log_prob(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """A draw (as ``sample``) and its log density."""
        z = self.sample(key, sample_shape)
        return z, self.log_prob(z)

    def sample_and_block_log_probs(
        self, key: jax.Array, sample_shape: tuple[int, ...] = ()
    ) -> tuple[jax.Array, jax.Array]:
        """A draw (as ``sample``) and its log density by blocks."""
        z = self.sample(key, sample_shape)
        return z, self.block_log_probs(z)
