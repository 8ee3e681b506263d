"""The optimizers of ``vae_jax.optimizers`` against transcriptions of their originals, and
the learning-rate schedule."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vae_jax import adapter, optimizers


def _adam_norm_grad_reference(params, gradients, lr, betas=(0.9, 0.999), eps=1e-8):
    """``AdamNormGrad.step`` of the VampPrior code (``utils/optimizer.py``), in numpy, for a
    sequence of gradients; each parameter tensor is its own ``p``."""
    state = {name: (np.zeros_like(p), np.zeros_like(p)) for name, p in params.items()}
    params = {name: p.copy() for name, p in params.items()}
    beta1, beta2 = betas
    for step, grads in enumerate(gradients, start=1):
        for name, grad in grads.items():
            grad = grad / (np.linalg.norm(grad.ravel(), 2) + 1.0e-7)
            exp_avg, exp_avg_sq = state[name]
            exp_avg = beta1 * exp_avg + (1 - beta1) * grad
            exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
            state[name] = (exp_avg, exp_avg_sq)
            denom = np.sqrt(exp_avg_sq) + eps
            bias_correction1 = 1 - beta1**step
            bias_correction2 = 1 - beta2**step
            step_size = lr * math.sqrt(bias_correction2) / bias_correction1
            params[name] = params[name] - step_size * exp_avg / denom
    return params


def test_adam_normgrad_is_the_vampprior_codes_adam_norm_grad():
    """Five steps on two tensors with gradients of very different sizes: each is divided by
    its own norm before Adam (fails with no normalization, a global norm, or the
    normalization after Adam). PyTorch's Adam folds the bias correction into the step size
    and adds eps to sqrt(v) uncorrected, optax corrects v first: equal up to eps-sized terms."""
    rng = np.random.default_rng(0)
    params = {"kernel": rng.normal(size=(5, 3)), "bias": rng.normal(size=(3,))}
    gradients = [
        {"kernel": 100.0 * rng.normal(size=(5, 3)), "bias": 0.01 * rng.normal(size=(3,))}
        for _ in range(5)
    ]
    optimizer = optimizers.make_optimizer(5e-4, name="adam_normgrad")
    ours = jax.tree.map(jnp.asarray, params)
    state = optimizer.init(ours)
    for grads in gradients:
        updates, state = optimizer.update(jax.tree.map(jnp.asarray, grads), state, ours)
        ours = jax.tree.map(lambda p, u: p + u, ours, updates)
    expected = _adam_norm_grad_reference(params, gradients, 5e-4)
    for name in params:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-6, atol=1e-7)
        assert not np.allclose(expected[name], params[name])


def test_learning_rate_schedules(tiny_config):
    tiny_config.optimizer.schedule = "warmup_cosine"
    tiny_config.optimizer.warmup_steps = 10
    tiny_config.optimizer.final_learning_rate_ratio = 0.1
    _, schedule = adapter.optimizer_from_config(tiny_config, total_steps=110)
    np.testing.assert_allclose(schedule(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(schedule(10), 1e-3, rtol=1e-5)
    np.testing.assert_allclose(schedule(60), 1e-3 * (0.1 + 0.9 * 0.5), rtol=1e-4)
    np.testing.assert_allclose(schedule(110), 1e-4, rtol=1e-4)


@pytest.mark.parametrize("norm", [0, 0.0, -1.0])
def test_a_clip_norm_at_or_below_zero_is_refused_not_applied(norm):
    """``grad_clip_norm=0`` meant "off" before the program builder made clipping a
    structural choice (None); clipping to 0 would zero every update, so it is refused."""
    with pytest.raises(ValueError, match=r"^grad_clip_norm="):
        optimizers.make_optimizer(1e-3, grad_clip_norm=norm)
