"""The optax optimizer and its learning-rate schedule, from keyword arguments.

Numeric arguments may be traced scalars (``vae_jax.hyperparameters``): a grid sweep passes
them as inputs of one compiled program. Whether clipping is on is structure, said by
``grad_clip_norm`` being given (not None), never read from its value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(
    *,
    learning_rate: float,
    total_steps: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    final_learning_rate_ratio: float = 0.0,
) -> optax.Schedule:
    """Constant, or linear warm-up then cosine decay (Loshchilov & Hutter, 2017).

    Args:
      learning_rate: the peak learning rate.
      total_steps: steps of the whole run (the cosine decays over them).
      schedule: ``"constant"`` or ``"warmup_cosine"``.
      warmup_steps: warmup_cosine: steps of the linear warm-up from 0.
      final_learning_rate_ratio: warmup_cosine: final / peak learning rate.
    """
    peak = learning_rate
    if schedule == "constant":
        return optax.constant_schedule(peak)
    if schedule == "warmup_cosine":
        # optax.warmup_cosine_decay_schedule(0, peak, warmup, decay, peak * ratio), composed
        # here from its parts because it branches on the peak's value (which may be traced).
        warmup = int(warmup_steps)
        decay_steps = max(int(total_steps), warmup + 1)
        ratio = final_learning_rate_ratio
        return optax.join_schedules(
            [
                optax.linear_schedule(0.0, peak, warmup),
                optax.cosine_decay_schedule(peak, decay_steps - warmup, alpha=ratio),
            ],
            [warmup],
        )
    raise ValueError(f"optimizer.schedule={schedule!r}")


OPTIMIZERS = ("adam", "adamw", "adam_normgrad")
NORMGRAD_EPSILON = 1e-7  # the VampPrior code's AdamNormGrad: grad / (||grad||_2 + 1e-7)


def normalize_each_gradient(epsilon: float = NORMGRAD_EPSILON) -> optax.GradientTransformation:
    """Divides each parameter array's gradient by its own L2 norm (plus ``epsilon``): the
    first line of ``AdamNormGrad`` in Tomczak & Welling's VampPrior code
    (``utils/optimizer.py``), applied per tensor as PyTorch iterates ``p.grad``."""

    def update(updates, state, params=None):
        del params
        normalized = jax.tree.map(
            lambda g: g / (jnp.sqrt(jnp.sum(jnp.square(g))) + epsilon), updates
        )
        return normalized, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    learning_rate: float | optax.Schedule,
    *,
    name: str = "adam",
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    grad_clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """Adam (Kingma & Ba, 2015), AdamW (Loshchilov & Hutter, 2019) or ``adam_normgrad``
    (Adam on each parameter array's gradient divided by its norm, the VampPrior code's
    ``AdamNormGrad``), after optional global-norm gradient clipping.

    Args:
      learning_rate: a constant or a schedule (``learning_rate_schedule``).
      name: one of ``OPTIMIZERS``.
      b1: decay of the first-moment average.
      b2: decay of the second-moment average.
      eps: added to the root of the second moment.
      weight_decay: adamw only: decoupled weight decay.
      grad_clip_norm: clip the global gradient norm to this; None: no clipping stage (a
        config's 0 = off becomes None in ``vae_jax.adapter``). A number at or below 0 is
        refused: it used to mean "off" here, and clipping to 0 would zero every update.
    """
    if isinstance(grad_clip_norm, (int, float)) and grad_clip_norm <= 0:
        raise ValueError(
            f"grad_clip_norm={grad_clip_norm!r}: give a positive norm, or None for no clipping"
        )
    common = dict(b1=b1, b2=b2, eps=eps)
    if name == "adam":
        optimizer = optax.adam(learning_rate, **common)
    elif name == "adamw":
        optimizer = optax.adamw(learning_rate, weight_decay=weight_decay, **common)
    elif name == "adam_normgrad":
        optimizer = optax.chain(normalize_each_gradient(), optax.adam(learning_rate, **common))
    else:
        raise ValueError(f"optimizer.name={name!r}")
    if grad_clip_norm is not None:
        return optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
    return optimizer
