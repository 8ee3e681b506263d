"""The optax optimizer and its learning-rate schedule, from keyword arguments."""

from __future__ import annotations

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
    peak = float(learning_rate)
    if schedule == "constant":
        return optax.constant_schedule(peak)
    if schedule == "warmup_cosine":
        warmup = int(warmup_steps)
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=warmup,
            decay_steps=max(int(total_steps), warmup + 1),
            end_value=peak * float(final_learning_rate_ratio),
        )
    raise ValueError(f"optimizer.schedule={schedule!r}")


def make_optimizer(
    learning_rate: float | optax.Schedule,
    *,
    name: str = "adam",
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    grad_clip_norm: float = 0.0,
) -> optax.GradientTransformation:
    """Adam (Kingma & Ba, 2015) or AdamW (Loshchilov & Hutter, 2019), after optional
    global-norm gradient clipping.

    Args:
      learning_rate: a constant or a schedule (``learning_rate_schedule``).
      name: ``"adam"`` or ``"adamw"``.
      b1: decay of the first-moment average.
      b2: decay of the second-moment average.
      eps: added to the root of the second moment.
      weight_decay: adamw only: decoupled weight decay.
      grad_clip_norm: clip the global gradient norm to this (0 = off).
    """
    common = dict(b1=b1, b2=b2, eps=eps)
    if name == "adam":
        optimizer = optax.adam(learning_rate, **common)
    elif name == "adamw":
        optimizer = optax.adamw(learning_rate, weight_decay=weight_decay, **common)
    else:
        raise ValueError(f"optimizer.name={name!r}")
    if grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
    return optimizer
