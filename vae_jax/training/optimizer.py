"""The optax optimizer and learning-rate schedule from config."""

from __future__ import annotations

import optax


def learning_rate_schedule(optimizer_config, total_steps: int) -> optax.Schedule:
    """Constant, or linear warm-up then cosine decay to ``final_learning_rate_ratio``."""
    peak = float(optimizer_config.learning_rate)
    if optimizer_config.schedule == "constant":
        return optax.constant_schedule(peak)
    if optimizer_config.schedule == "warmup_cosine":
        warmup = int(optimizer_config.warmup_steps)
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=warmup,
            decay_steps=max(int(total_steps), warmup + 1),
            end_value=peak * float(optimizer_config.final_learning_rate_ratio),
        )
    raise ValueError(f"optimizer.schedule={optimizer_config.schedule!r}")


def make_optimizer(optimizer_config, total_steps: int) -> optax.GradientTransformation:
    """Adam or AdamW on the schedule, after optional global-norm gradient clipping."""
    schedule = learning_rate_schedule(optimizer_config, total_steps)
    common = dict(b1=optimizer_config.b1, b2=optimizer_config.b2, eps=optimizer_config.eps)
    if optimizer_config.name == "adam":
        optimizer = optax.adam(schedule, **common)
    elif optimizer_config.name == "adamw":
        optimizer = optax.adamw(schedule, weight_decay=optimizer_config.weight_decay, **common)
    else:
        raise ValueError(f"optimizer.name={optimizer_config.name!r}")
    if optimizer_config.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optimizer_config.grad_clip_norm), optimizer)
    return optimizer
