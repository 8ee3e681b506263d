"""``log p(x)`` of a VAE by annealed importance sampling, and BDMC on simulated data.

The model-agnostic core (``vae_jax.evaluation.ais``) applied to the VAE's joint
``log p(x, z) = log p(x|z) + log p(z)``, annealed from ``q(z|x)`` (the encoder, the
default) or from the prior (Wu et al., 2017). A hierarchy's ``z`` is the concatenation of
its layers and is annealed whole. Functions take one example ``x`` (``(H, W, C)``, as the
model reads it) and are ``jit``- and ``vmap``-compatible.

BDMC (Grosse et al., 2015) for simulated example key ``k``: ``z ~ p(z)`` with
``fold_in(k, 0)``, ``x ~ p(x|z)`` with ``fold_in(k, 1)``; forward AIS with
``fold_in(k, 2)`` bounds ``log p(x)`` from below, reverse AIS from that ``z`` (an exact
posterior sample) with ``fold_in(k, 3)`` from above.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from vae_jax.evaluation import ais

INITIAL_DISTRIBUTIONS = ("posterior", "prior")
BDMC_KEY_IDS: dict[str, int] = {"latent": 0, "observation": 1, "forward": 2, "reverse": 3}


class AISOptions(NamedTuple):
    """What one AIS estimate of ``log p(x)`` runs (static: it shapes the program)."""

    num_steps: int = 1000  # intermediate distributions T
    num_chains: int = 16
    chain_chunk_size: int | None = None  # chains run (and adapt a step size) together
    schedule: str = "sigmoidal"  # or "linear"
    initial: str = "posterior"  # anneal from q(z|x), or from the prior p(z)
    hmc: ais.HMCSettings = ais.DEFAULT_HMC


class BDMCResult(NamedTuple):
    """One simulated example: its ``x`` and ``z``, and the two bounds on ``log p(x)``."""

    x: jax.Array
    z: jax.Array
    lower: ais.AISResult  # forward AIS: log_normalizer <= log p(x) in expectation
    upper: ais.AISResult  # reverse AIS: log_normalizer >= log p(x) in expectation


def check_options(options: AISOptions) -> None:
    """Refuses options that cannot run, in one line naming the option."""
    if options.initial not in INITIAL_DISTRIBUTIONS:
        raise ValueError(f"initial={options.initial!r}; choose one of {INITIAL_DISTRIBUTIONS}")
    ais.annealing_schedule(options.schedule, options.num_steps)
    if int(options.num_chains) < 1:
        raise ValueError(f"num_chains={options.num_chains} must be >= 1")
    if options.hmc.num_leapfrog_steps < 1:
        raise ValueError(f"num_leapfrog_steps={options.hmc.num_leapfrog_steps} must be >= 1")


def check_density_everywhere(q) -> None:
    """AIS from ``q(z|x)`` evaluates ``log q`` at the chains' states, not only at q's draws."""
    if not q.density_everywhere:  # the latent contract (vae_jax.model.contract)
        raise ValueError(
            "AIS from q(z|x) needs its density at any z, which this posterior (a flow) "
            "does not have: anneal from the prior (--ais_initial=prior)"
        )


def log_joint_fn(vae, params, x):
    """``z -> log p(x|z) + log p(z)``: the unnormalized posterior, whose normalizer is
    ``p(x)``."""
    prior = vae.prior(params)
    # z as a batch of one: every architecture's decoder reads a batch
    return lambda z: vae.decode(params, z[None]).log_prob(x)[0] + prior.log_prob(z)


def initial_distribution(vae, params, x, initial: str):
    """``(sample(key) -> z, log_prob(z))`` of ``q(z|x)`` or of the prior."""
    if initial == "prior":
        prior = vae.prior(params)
        return (lambda key: prior.sample(key, ())), prior.log_prob
    if initial != "posterior":
        raise ValueError(f"initial={initial!r}; choose one of {INITIAL_DISTRIBUTIONS}")
    q = vae.encode(params, x)
    check_density_everywhere(q)
    return (lambda key: q.sample(key)), q.log_prob


def log_likelihood(vae, params, key: jax.Array, x: jax.Array, options: AISOptions) -> ais.AISResult:
    """Forward AIS for one example: ``log_normalizer`` estimates ``log p(x)`` from below."""
    sample, log_initial = initial_distribution(vae, params, x, options.initial)
    return ais.ais(
        key,
        sample_initial=sample,
        log_initial=log_initial,
        log_target=log_joint_fn(vae, params, x),
        num_steps=options.num_steps,
        num_chains=options.num_chains,
        chain_chunk_size=options.chain_chunk_size,
        schedule=options.schedule,
        hmc=options.hmc,
    )


def upper_bound(
    vae, params, key: jax.Array, x: jax.Array, exact_z: jax.Array, options: AISOptions
) -> ais.AISResult:
    """Reverse AIS for one example from ``exact_z``, an exact draw of ``p(z|x)``:
    ``log_normalizer`` estimates ``log p(x)`` from above."""
    _, log_initial = initial_distribution(vae, params, x, options.initial)
    return ais.reverse_ais(
        key,
        exact_z,
        log_initial=log_initial,
        log_target=log_joint_fn(vae, params, x),
        num_steps=options.num_steps,
        num_chains=options.num_chains,
        chain_chunk_size=options.chain_chunk_size,
        schedule=options.schedule,
        hmc=options.hmc,
    )


def simulate(vae, params, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One ``(z, x)`` from the model: ``z ~ p(z)``, then ``x ~ p(x|z)`` (keys above)."""
    z = vae.prior(params).sample(jax.random.fold_in(key, BDMC_KEY_IDS["latent"]), ())
    p = vae.decode(params, z[None])
    x = p.sample(jax.random.fold_in(key, BDMC_KEY_IDS["observation"]))[0]
    return z, x


def bdmc(vae, params, key: jax.Array, options: AISOptions) -> BDMCResult:
    """Both bounds on ``log p(x)`` of one example simulated from the model with ``key``."""
    z, x = simulate(vae, params, key)
    forward_key = jax.random.fold_in(key, BDMC_KEY_IDS["forward"])
    lower = log_likelihood(vae, params, forward_key, x, options)
    upper = upper_bound(
        vae, params, jax.random.fold_in(key, BDMC_KEY_IDS["reverse"]), x, z, options
    )
    return BDMCResult(x, z, lower, upper)
