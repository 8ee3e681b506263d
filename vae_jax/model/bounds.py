"""The bounds on ``log p(x)``, written once against the latent contract.

``elbo``, ``log_importance_weights``, ``iwae_bound`` and ``generate`` take the model's pure
functions (``ModelFunctions``: encode, decode, prior) and ask the distributions they return
for draws, densities and blocks (``vae_jax.model.contract``) and the model for its declared
capabilities; no bound asks what a part is called or what class it is.

Keys: draw ``s`` of ``q(z|x)`` uses ``fold_in(key, s)`` (``sample_keys``), so the first
``n`` draws are the same whatever the number of draws is and however they are chunked,
and the IWAE bound with ``K=1`` is the ELBO with a Monte Carlo KL at the same key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from vae_jax.model.contract import log_prob_on_blocks, spread_over_blocks

Params = Any
KL_ESTIMATORS = ("analytic", "mc")
OBSERVATIONS = ("mean", "sample")


class ModelFunctions(NamedTuple):
    """What the bounds need of a model.

    Attributes:
      encode: ``(params, x) -> q(z|x)``.
      decode: ``(params, z) -> p(x|z)``.
      prior: ``params -> p(z)``.
      closed_form_kl: ``KL(q || p)`` has a closed form (``kl="analytic"`` allowed).
      density_everywhere: ``q``'s density is known at any ``z`` (STL allowed).
      describe: the model's parts in words, for messages.
    """

    encode: Callable[[Params, jax.Array], Any]
    decode: Callable[[Params, jax.Array], Any]
    prior: Callable[[Params], Any]
    closed_form_kl: bool
    density_everywhere: bool
    describe: str


class ElboOutput(NamedTuple):
    """Per-example terms of ``ELBO = log_likelihood - beta * kl`` (Monte Carlo over z)."""

    elbo: jax.Array  # (...,)
    log_likelihood: jax.Array  # (...,) E_q[log p(x|z)]
    kl: jax.Array  # (...,) KL(q(z|x) || p(z)), analytic or Monte Carlo
    # (..., latent_dim): the KL of each dimension where q and p factorize over dimensions
    # (the Gaussian posterior with the standard normal prior); otherwise the KL of each of
    # q's blocks (vae_jax.model.contract: a hierarchy's layers, a flow's one block) shared
    # equally among its dimensions: it sums to the KL but is no per-dimension KL (free bits
    # refuse such models; ``hierarchy.layer_sums`` gives the KL per layer back).
    kl_per_dim: jax.Array


@struct.dataclass
class Generation:
    """Generated images and the latents they came from; ``observation`` says whether ``x``
    is the decoder's mean ``E[x|z]`` or a sample ``x ~ p(x|z)``."""

    x: jax.Array
    z: jax.Array
    observation: str = struct.field(pytree_node=False)


def sample_keys(key: jax.Array, sample_ids: jax.Array) -> jax.Array:
    """The keys of latent draws ``sample_ids``: ``fold_in(key, s)`` for each ``s``."""
    return jax.vmap(lambda s: jax.random.fold_in(key, s))(sample_ids.astype(jnp.uint32))


def draw_latents(keys: jax.Array, q) -> jax.Array:
    """One reparameterized draw of ``q`` per key, shape ``(S,) + q.shape``."""
    return jax.vmap(lambda k: q.sample(k))(keys)


def reparameterize(key: jax.Array, q, num_samples: int = 1) -> jax.Array:
    """``num_samples`` draws ``z = loc + scale * eps`` from ``q`` (a flow: that draw pushed
    through the flow), shape ``(S,) + q.shape``; draw ``s`` uses ``fold_in(key, s)``."""
    return draw_latents(sample_keys(key, jnp.arange(num_samples)), q)


def draws_with_log_prob(keys: jax.Array, q) -> tuple[jax.Array, jax.Array]:
    """One draw per key and its ``log q(z|x)``, shapes ``(S, ..., D)`` and ``(S, ...)``: the
    density evaluated on all draws at once where it is known at any ``z``, else each draw's
    own (a flow's change of variables)."""
    if q.density_everywhere:
        z = draw_latents(keys, q)
        return z, q.log_prob(z)
    return jax.vmap(q.sample_and_log_prob)(keys)


def elbo(
    model: ModelFunctions,
    params: Params,
    key: jax.Array,
    x: jax.Array,
    num_samples: int = 1,
    kl: str = "analytic",
    beta: float | jax.Array = 1.0,
    stick_the_landing: bool = False,
) -> ElboOutput:
    """Per-example ``E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))``.

    ``num_samples`` latent draws per example (the only random draws); the
    reconstruction term is the closed-form log-likelihood of ``x`` under ``p(x|z)``.
    ``kl="analytic"`` uses the Gaussian closed form (where ``model.closed_form_kl``),
    ``kl="mc"`` the Monte Carlo estimate ``log q(z|x) - log p(z)`` at the same draws, per
    block of ``q`` (``vae_jax.model.contract``). ``stick_the_landing`` (``kl="mc"`` only;
    Roeder et al., 2017) evaluates ``log q`` with its parameters held constant: the same
    values, a gradient without the score term, whose mean is unchanged and whose variance
    vanishes as q reaches the posterior.
    """
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"kl={kl!r}; choose one of {KL_ESTIMATORS}")
    if stick_the_landing and kl != "mc":
        raise ValueError("stick_the_landing needs kl='mc' (it changes log q's gradient)")
    if kl == "analytic" and not model.closed_form_kl:
        raise ValueError(f"kl='analytic' has no closed form for {model.describe}; use 'mc'")
    if stick_the_landing and not model.density_everywhere:
        raise ValueError(f"stick_the_landing needs q's density at any z; {model.describe} has none")
    q = model.encode(params, x)
    keys = sample_keys(key, jnp.arange(num_samples))
    at_draws = kl == "mc" and not q.density_everywhere  # a flow: log q from its own draws
    if at_draws:
        z, log_q_blocks = jax.vmap(q.sample_and_block_log_probs)(keys)  # (S, ..., blocks)
    else:
        z = draw_latents(keys, q)  # (S, ..., D)
    log_likelihood = jnp.mean(model.decode(params, z).log_prob(x), axis=0)
    p = model.prior(params)
    if kl == "analytic":
        kl_per_dim = q.kl_elementwise(p)
    else:
        if not at_draws:  # the density at the draws, after the decoder (the order fixes bits)
            q_in_log_q = jax.lax.stop_gradient(q) if stick_the_landing else q
            log_q_blocks = q_in_log_q.block_log_probs(z)
        log_p_blocks = log_prob_on_blocks(p, z, q.blocks)
        kl_per_dim = spread_over_blocks(jnp.mean(log_q_blocks - log_p_blocks, axis=0), q.blocks)
    kl_total = jnp.sum(kl_per_dim, axis=-1)
    return ElboOutput(log_likelihood - beta * kl_total, log_likelihood, kl_total, kl_per_dim)


def log_importance_weights(
    model: ModelFunctions, params: Params, x: jax.Array, q, z: jax.Array
) -> jax.Array:
    """``log p(x|z) + log p(z) - log q(z|x)`` for draws ``z`` of shape (S, ..., D)."""
    return model.decode(params, z).log_prob(x) + model.prior(params).log_prob(z) - q.log_prob(z)


def iwae_bound(
    model: ModelFunctions,
    params: Params,
    key: jax.Array,
    x: jax.Array,
    num_samples: int,
    chunk_size: int | None = None,
) -> jax.Array:
    """Per-example importance-weighted bound ``log (1/K) sum_k p(x,z_k)/q(z_k|x)``.

    Burda et al., 2015. ``z_k`` uses key ``fold_in(key, k)``, exactly as
    ``reparameterize``, so ``K=1`` is the ELBO with Monte Carlo KL at the same key.
    The K draws are processed ``chunk_size`` at a time (default: all at once) with a
    running log-sum-exp, so memory is bounded by the chunk, not by K.
    """
    q = model.encode(params, x)
    chunk = num_samples if chunk_size is None else max(1, min(int(chunk_size), num_samples))
    num_chunks = -(-num_samples // chunk)
    sample_ids = jnp.arange(num_chunks * chunk)  # the last chunk is padded and masked
    keys = sample_keys(key, sample_ids)
    valid = sample_ids < num_samples

    p = model.prior(params)  # once, not per chunk: a VampPrior runs the encoder

    def chunk_log_sum_exp(chunk_keys, chunk_valid):
        z, log_q = draws_with_log_prob(chunk_keys, q)
        log_w = model.decode(params, z).log_prob(x) + p.log_prob(z) - log_q
        mask = jnp.reshape(chunk_valid, (-1,) + (1,) * (log_w.ndim - 1))
        return jax.nn.logsumexp(jnp.where(mask, log_w, -jnp.inf), axis=0)

    if num_chunks == 1:
        total = chunk_log_sum_exp(keys, valid)
    else:

        def body(running, chunk_inputs):
            return jnp.logaddexp(running, chunk_log_sum_exp(*chunk_inputs)), None

        chunked = (keys.reshape(num_chunks, chunk), valid.reshape(num_chunks, chunk))
        initial = jnp.full(q.shape[:-1], -jnp.inf, jnp.float32)
        total, _ = jax.lax.scan(body, initial, chunked)
    return total - jnp.log(float(num_samples))


def generate(
    model: ModelFunctions, params: Params, key: jax.Array, num: int, observation: str = "mean"
) -> Generation:
    """``num`` images from the model: ``z ~ p(z)`` with ``split(key)[0]``, then the
    decoder's mean ``E[x|z]`` (``observation="mean"``) or a draw ``x ~ p(x|z)`` with
    ``split(key)[1]`` (``"sample"``). The same key gives the same ``z`` for both."""
    if observation not in OBSERVATIONS:
        raise ValueError(f"observation={observation!r}; choose one of {OBSERVATIONS}")
    latent_key, observation_key = jax.random.split(key)
    z = model.prior(params).sample(latent_key, (num,))
    p = model.decode(params, z)
    x = p.mean() if observation == "mean" else p.sample(observation_key)
    return Generation(x=x, z=z, observation=observation)
