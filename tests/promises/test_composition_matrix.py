"""Every combination the compatibility table allows (prior x posterior x layers x inference
x architecture x objective x KL x gradient estimator x free bits), on a tiny model, at one
key: the IWAE bound with K=1 is the ELBO with kl=mc, the IWAE bound of K draws is not below
the ELBO of the same draws, and every objective gives a finite loss and finite gradients.
The table itself, the core's refusals and the brute-force checks are in
tests/model/test_compatibility.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers.compositions import (
    ALLOWED,
    MASK,
    MODELS,
    X,
    _model_parts,
    _objective,
    _random_params,
    _vae,
)

# Builds and trains every allowed combination: left out by scripts/test.sh --fast.
pytestmark = pytest.mark.slow

NUM_SAMPLES = 8
# Tiny programs, run once: XLA's quick compile (less LLVM work; half the compile time of a
# model's whole matrix here). Nothing here is compared with numbers compiled otherwise.
QUICK_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.cache
def _built(parts):
    vae = _vae(*parts)
    return vae, _random_params(jax.eval_shape(vae.init, jax.random.key(7)), 7, 0.3)


@pytest.mark.parametrize("parts", MODELS, ids=lambda p: "-".join(map(str, p)))
def test_every_allowed_combination_bounds_and_trains(parts):
    """At one key: IWAE(K=1) = ELBO(kl=mc); IWAE(K=8) >= the ELBO of the same 8 draws (the
    log of a mean against the mean of the logs); each allowed objective and gradient
    estimator gives a finite loss and finite gradients; the closed form, where the table
    allows it, is the Monte Carlo KL's expectation (same bound at K=1 up to the KL's noise
    is not checked here: test_objectives does)."""
    vae, params = _built(parts)
    combos = [c for c in ALLOWED if _model_parts(c) == parts]
    key = jax.random.key(3)

    def run(params):
        out = {
            "elbo_1": vae.elbo(params, key, X, 1, kl="mc").elbo,
            "iwae_1": vae.iwae_bound(params, key, X, 1),
            "elbo_k": vae.elbo(params, key, X, NUM_SAMPLES, kl="mc").elbo,
            "iwae_k": vae.iwae_bound(params, key, X, NUM_SAMPLES),
        }
        for i, c in enumerate(combos):
            grad_fn = jax.value_and_grad(_objective(vae, c), has_aux=True)
            (loss, _), grads = grad_fn(params, key, X, MASK, jnp.int32(4))
            out[f"loss_{i}"] = loss
            out[f"grad_{i}"] = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        return out

    compiled = jax.jit(run).lower(params).compile(compiler_options=QUICK_COMPILE)
    out = jax.tree.map(np.asarray, compiled(params))
    np.testing.assert_allclose(out["iwae_1"], out["elbo_1"], rtol=2e-6, atol=2e-6)
    assert np.all(out["iwae_k"] >= out["elbo_k"] - 1e-5), (out["iwae_k"], out["elbo_k"])
    for i, c in enumerate(combos):
        assert np.isfinite(out[f"loss_{i}"]), c
        assert out[f"grad_{i}"].all(), c
