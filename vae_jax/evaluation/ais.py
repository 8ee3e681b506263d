"""Annealed importance sampling with HMC transitions, forward and reverse: pure JAX.

AIS (Neal, 2001) estimates the normalizer ``Z`` of an unnormalized target ``f_1(z)`` from
an initial density ``p_0`` (normalized, sampled exactly) through the geometric path

    log f_b(z) = log p_0(z) + b * (log f_1(z) - log p_0(z)),   0 = b_0 < ... < b_T = 1.

A chain draws ``z_0 ~ p_0`` and accumulates ``log w = sum_t (b_t - b_{t-1}) d(z_{t-1})``
with ``d = log f_1 - log p_0``, moving ``z_{t-1} -> z_t`` between the increments by an HMC
transition that leaves ``f_{b_t}`` invariant (``T`` increments, ``T - 1`` transitions, at
``b_1, ..., b_{T-1}``). ``E[exp(log w)] = Z`` exactly (with a fixed step size), so
``log mean_c exp(log w_c)`` over chains is a stochastic lower bound on ``log Z``; with
``T = 1`` it is importance sampling from ``p_0`` (the IWAE bound with K = chains).

Reverse AIS runs the same path backwards from an exact sample of the target: its weights
estimate ``1 / Z`` without bias, so ``-log mean_c exp(log w_c)`` is a stochastic upper
bound on ``log Z``. On data simulated from a model the exact posterior sample is the
latent that generated it, and the two bounds bracket ``log p(x)``: bidirectional Monte
Carlo (Grosse et al., 2015; for decoder-based models Wu et al., 2017, whose schedule and
step-size adaptation are used here).

Everything here is per example: ``sample_initial(key) -> z``, ``log_initial(z)`` and
``log_target(z)`` take one ``z`` of shape ``(D,)``; chains are vmapped, examples are
vmapped by the caller. Chains run in groups of ``chain_chunk_size`` (memory is bounded by
one group); each group adapts its own HMC step size toward ``target_acceptance`` from its
chains' acceptances (Wu et al.: multiply by 1.02 above the target, 0.98 below, of a moving
average), so results depend on the chunk size but not on anything else's batching.
Adaptation makes a transition depend on the chains' past, a small departure from exact AIS
that Wu et al. accept; ``adapt_step_size=False`` keeps the weights exactly unbiased.

Keys, for a key ``k`` of one example (every draw recomputable with ``jax.random``):

* chain ``c``'s initial draw: ``sample_initial(fold_in(fold_in(k, 0), c))``;
* transition ``j`` (1, ..., T - 1, in the order run) of chain ``c``: the momentum
  ``normal(fold_in(fold_in(fold_in(k, 1), j), c), (D,))`` and the accept test
  ``uniform(fold_in(fold_in(fold_in(k, 2), j), c))``.

Chain ids and transition ids do not depend on the group a chain runs in. Log-densities,
weights and the log-mean-exp are float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("sigmoidal", "linear")
# Fixed ids of the key streams under an example's key (see the module docstring).
KEY_IDS: dict[str, int] = {"initial": 0, "momentum": 1, "accept": 2}
SIGMOID_RADIUS = 4.0  # Wu et al.'s schedule: sigmoid over [-4, 4]


def sigmoidal_schedule(num_steps: int, radius: float = SIGMOID_RADIUS) -> np.ndarray:
    """``b_0 = 0, ..., b_T = 1`` (``T = num_steps``): the logistic sigmoid at ``T + 1``
    evenly spaced points of ``[-radius, radius]``, rescaled to [0, 1]. Denser near 0 and 1,
    where the distributions change fastest (Wu et al., 2017, section 6.2)."""
    if num_steps == 1:
        return np.array([0.0, 1.0], np.float32)
    sigmoid = 1.0 / (1.0 + np.exp(-np.linspace(-radius, radius, num_steps + 1)))
    return ((sigmoid - sigmoid[0]) / (sigmoid[-1] - sigmoid[0])).astype(np.float32)


def linear_schedule(num_steps: int) -> np.ndarray:
    """``b_t = t / T``, ``t = 0, ..., T``."""
    return np.linspace(0.0, 1.0, num_steps + 1).astype(np.float32)


def annealing_schedule(name: str, num_steps: int) -> np.ndarray:
    """The ``T + 1`` inverse temperatures of schedule ``name`` (one of ``SCHEDULES``)."""
    if int(num_steps) < 1:
        raise ValueError(f"num_steps={num_steps} must be >= 1")
    if name == "sigmoidal":
        return sigmoidal_schedule(int(num_steps))
    if name == "linear":
        return linear_schedule(int(num_steps))
    raise ValueError(f"schedule={name!r}; choose one of {SCHEDULES}")


class HMCSettings(NamedTuple):
    """HMC transitions and their step-size adaptation (defaults: Wu et al.'s code)."""

    num_leapfrog_steps: int = 10
    initial_step_size: float = 0.01
    adapt_step_size: bool = True
    target_acceptance: float = 0.65
    step_size_increase: float = 1.02  # factor when the average acceptance is above target
    step_size_decrease: float = 0.98  # ... and when it is not
    min_step_size: float = 1e-4
    max_step_size: float = 0.5
    acceptance_smoothing: float = 0.9  # the average's weight on its previous value


DEFAULT_HMC = HMCSettings()


class ChainState(NamedTuple):
    """One chain's position with the two log-densities and their gradients there (so a
    rejected proposal costs nothing to restore and ``f_b`` is known for every ``b``)."""

    z: jax.Array  # (D,)
    log_initial: jax.Array  # ()
    log_target: jax.Array  # ()
    grad_initial: jax.Array  # (D,)
    grad_target: jax.Array  # (D,)

    def log_density(self, beta) -> jax.Array:
        return self.log_initial + beta * (self.log_target - self.log_initial)

    def grad_log_density(self, beta) -> jax.Array:
        return self.grad_initial + beta * (self.grad_target - self.grad_initial)


class AISResult(NamedTuple):
    """One example's AIS (per-example arrays gain a leading example axis when vmapped)."""

    # log mean_c exp(log_weights_c): the estimate of log Z (forward: a stochastic lower
    # bound); reverse AIS: -log mean_c exp(log_weights_c), a stochastic upper bound.
    log_normalizer: jax.Array  # ()
    log_weights: jax.Array  # (C,) each chain's log weight
    acceptance_rate: jax.Array  # () accepted proposals / proposals (nan without any)
    step_size: jax.Array  # () the groups' final step sizes, averaged
    final_z: jax.Array  # (C, D) the chains' last states


def chain_state(z: jax.Array, log_initial: Callable, log_target: Callable) -> ChainState:
    """The state at ``z``: both log-densities and their gradients (float32)."""
    value_initial, grad_initial = jax.value_and_grad(log_initial)(z)
    value_target, grad_target = jax.value_and_grad(log_target)(z)
    return ChainState(
        z,
        value_initial.astype(jnp.float32),
        value_target.astype(jnp.float32),
        grad_initial.astype(jnp.float32),
        grad_target.astype(jnp.float32),
    )


def hmc_transition(
    state: ChainState,
    momentum_key: jax.Array,
    accept_key: jax.Array,
    *,
    beta,
    step_size,
    num_leapfrog_steps: int,
    log_initial: Callable,
    log_target: Callable,
) -> tuple[ChainState, jax.Array]:
    """One HMC transition of one chain leaving ``f_beta`` invariant: a standard normal
    momentum from ``momentum_key``, ``num_leapfrog_steps`` leapfrog steps of size
    ``step_size`` (unit mass), and a Metropolis test with ``uniform(accept_key)``
    (Neal, 2011). Returns the new state and whether the proposal was accepted."""
    momentum = jax.random.normal(momentum_key, state.z.shape, jnp.float32)

    def leapfrog(carry, _):
        proposal, p = carry
        z = proposal.z + step_size * p
        proposal = chain_state(z, log_initial, log_target)
        return (proposal, p + step_size * proposal.grad_log_density(beta)), None

    half_kick = momentum + 0.5 * step_size * state.grad_log_density(beta)
    (proposal, p), _ = jax.lax.scan(leapfrog, (state, half_kick), None, num_leapfrog_steps)
    p = p - 0.5 * step_size * proposal.grad_log_density(beta)  # the last kick is a half
    energy_before = -state.log_density(beta) + 0.5 * jnp.sum(jnp.square(momentum))
    energy_after = -proposal.log_density(beta) + 0.5 * jnp.sum(jnp.square(p))
    log_accept = jnp.where(jnp.isfinite(energy_after), energy_before - energy_after, -jnp.inf)
    accepted = jnp.log(jax.random.uniform(accept_key)) < log_accept
    new_state = jax.tree.map(lambda new, old: jnp.where(accepted, new, old), proposal, state)
    return new_state, accepted


def _adapted_step_size(step_size, average_acceptance, hmc: HMCSettings):
    factor = jnp.where(
        average_acceptance > hmc.target_acceptance, hmc.step_size_increase, hmc.step_size_decrease
    )
    return jnp.clip(step_size * factor, hmc.min_step_size, hmc.max_step_size)


def _key(stream: jax.Array, *ids) -> jax.Array:
    for i in ids:
        stream = jax.random.fold_in(stream, jnp.asarray(i, jnp.uint32))
    return stream


def _anneal_group(
    key: jax.Array,
    states: ChainState,
    chain_ids: jax.Array,
    valid: jax.Array,
    betas: jax.Array,
    *,
    log_initial: Callable,
    log_target: Callable,
    hmc: HMCSettings,
):
    """One group of chains along ``betas`` (forward or reversed): their log weights,
    accepted-proposal count, final step size and final states."""
    transition = jax.vmap(
        lambda s, mk, ak, step: hmc_transition(
            s, mk, ak, beta=step[0], step_size=step[1],
            num_leapfrog_steps=hmc.num_leapfrog_steps,
            log_initial=log_initial, log_target=log_target,
        ),
        in_axes=(0, 0, 0, None),
    )  # fmt: skip
    momentum_stream = _key(key, KEY_IDS["momentum"])
    accept_stream = _key(key, KEY_IDS["accept"])
    num_valid = jnp.maximum(jnp.sum(valid), 1)

    def increment(states, beta_from, beta_to):
        return (beta_to - beta_from) * (states.log_target - states.log_initial)

    def body(carry, inputs):
        states, log_w, step_size, average, accepted_count = carry
        j, beta, beta_next = inputs
        momentum_keys = jax.vmap(lambda c: _key(momentum_stream, j, c))(chain_ids)
        accept_keys = jax.vmap(lambda c: _key(accept_stream, j, c))(chain_ids)
        states, accepted = transition(states, momentum_keys, accept_keys, (beta, step_size))
        accepted = accepted & valid
        rate = jnp.sum(accepted) / num_valid
        if hmc.adapt_step_size:  # from the average before this transition (Wu et al.)
            step_size = _adapted_step_size(step_size, average, hmc)
        average = hmc.acceptance_smoothing * average + (1 - hmc.acceptance_smoothing) * rate
        log_w = log_w + increment(states, beta, beta_next)
        return (states, log_w, step_size, average, accepted_count + jnp.sum(accepted)), None

    log_w = increment(states, betas[0], betas[1])
    num_transitions = betas.shape[0] - 2
    initial = (
        states,
        log_w,
        jnp.float32(hmc.initial_step_size),
        jnp.float32(hmc.target_acceptance),
        jnp.int32(0),
    )
    if num_transitions == 0:
        carry = initial
    else:
        ids = jnp.arange(1, num_transitions + 1, dtype=jnp.uint32)
        carry, _ = jax.lax.scan(body, initial, (ids, betas[1:-1], betas[2:]))
    states, log_w, step_size, _, accepted_count = carry
    return log_w, accepted_count, step_size, states.z


def _run(
    key,
    initial_z: Callable[[jax.Array], jax.Array],
    num_chains: int,
    chain_chunk_size: int | None,
    betas: np.ndarray,
    log_initial: Callable,
    log_target: Callable,
    hmc: HMCSettings,
):
    """All chains in groups: ``initial_z(chain_id)`` starts a chain."""
    num_chains = int(num_chains)
    if num_chains < 1:
        raise ValueError(f"num_chains={num_chains} must be >= 1")
    chunk = num_chains if chain_chunk_size is None else int(chain_chunk_size)
    if not 1 <= chunk:
        raise ValueError(f"chain_chunk_size={chain_chunk_size} must be >= 1")
    chunk = min(chunk, num_chains)
    num_groups = -(-num_chains // chunk)
    chain_ids = jnp.arange(num_groups * chunk, dtype=jnp.uint32).reshape(num_groups, chunk)
    valid = chain_ids < num_chains  # the last group is padded and masked
    betas = jnp.asarray(betas, jnp.float32)

    def group(inputs):
        ids, group_valid = inputs
        z = jax.vmap(initial_z)(ids)
        states = jax.vmap(lambda z: chain_state(z, log_initial, log_target))(z)
        return _anneal_group(
            key, states, ids, group_valid, betas,
            log_initial=log_initial, log_target=log_target, hmc=hmc,
        )  # fmt: skip

    log_w, accepted, step_size, final_z = jax.lax.map(group, (chain_ids, valid))
    num_transitions = betas.shape[0] - 2
    log_w = log_w.reshape(-1)[:num_chains]
    final_z = final_z.reshape(-1, final_z.shape[-1])[:num_chains]
    proposals = num_chains * num_transitions
    acceptance = jnp.sum(accepted) / proposals if proposals else jnp.float32(jnp.nan)
    return log_w, acceptance.astype(jnp.float32), jnp.mean(step_size), final_z


def log_mean_exp(values: jax.Array, axis: int = -1) -> jax.Array:
    """``log mean exp`` along ``axis`` in float32 (a max shift keeps it finite)."""
    values = values.astype(jnp.float32)
    return jax.nn.logsumexp(values, axis=axis) - jnp.log(jnp.float32(values.shape[axis]))


def ais(
    key: jax.Array,
    *,
    sample_initial: Callable[[jax.Array], jax.Array],
    log_initial: Callable[[jax.Array], jax.Array],
    log_target: Callable[[jax.Array], jax.Array],
    num_steps: int,
    num_chains: int,
    chain_chunk_size: int | None = None,
    schedule: str = "sigmoidal",
    hmc: HMCSettings = DEFAULT_HMC,
) -> AISResult:
    """Forward AIS from ``p_0`` (``sample_initial``, ``log_initial``) to ``f_1``
    (``log_target``, unnormalized) with ``num_steps`` intermediate distributions and
    ``num_chains`` chains; ``log_normalizer`` estimates ``log Z`` from below (see the
    module docstring for the path, the keys and the chunking)."""
    betas = annealing_schedule(schedule, num_steps)
    initial_stream = _key(key, KEY_IDS["initial"])
    log_w, acceptance, step_size, final_z = _run(
        key,
        lambda c: sample_initial(_key(initial_stream, c)),
        num_chains,
        chain_chunk_size,
        betas,
        log_initial,
        log_target,
        hmc,
    )
    return AISResult(log_mean_exp(log_w), log_w, acceptance, step_size, final_z)


def reverse_ais(
    key: jax.Array,
    exact_sample: jax.Array,
    *,
    log_initial: Callable[[jax.Array], jax.Array],
    log_target: Callable[[jax.Array], jax.Array],
    num_steps: int,
    num_chains: int,
    chain_chunk_size: int | None = None,
    schedule: str = "sigmoidal",
    hmc: HMCSettings = DEFAULT_HMC,
) -> AISResult:
    """Reverse AIS: every chain starts at ``exact_sample`` (an exact draw from the
    normalized target) and runs the schedule backwards (``b_T, ..., b_0``), so its weight
    estimates ``Z_0 / Z = 1 / Z``; ``log_normalizer = -log mean_c exp(log w_c)`` is a
    stochastic upper bound on ``log Z`` (Grosse et al., 2015). Keys as ``ais``, with
    transition ``j`` the ``j``-th in the reversed order and no initial draws."""
    betas = annealing_schedule(schedule, num_steps)[::-1].copy()
    exact_sample = jnp.asarray(exact_sample, jnp.float32)
    log_w, acceptance, step_size, final_z = _run(
        key,
        lambda c: exact_sample,
        num_chains,
        chain_chunk_size,
        betas,
        log_initial,
        log_target,
        hmc,
    )
    return AISResult(-log_mean_exp(log_w), log_w, acceptance, step_size, final_z)
