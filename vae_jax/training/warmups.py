"""Warm-ups longer than the whole training: accepted (a run may be continued with more
epochs), but said in one line at the start, because the value the user set is never
reached."""

from __future__ import annotations

from vae_jax import adapter


def warmup_warnings(config, num_train_examples: int) -> list[str]:
    """One line per warm-up of ``config`` that does not end within its training.

    The KL weight at step ``t`` is ``beta * min(1, (t + 1) / W)``: it reaches ``beta`` at
    step ``W - 1``, so within ``T`` steps only if ``W <= T``. The learning rate of
    ``warmup_cosine`` rises linearly from 0 to its peak at step ``warmup_steps``, so it
    reaches it only if ``warmup_steps <= T - 1``.
    """
    total = adapter.total_steps(config, num_train_examples)
    lines = []
    kl_warmup = int(config.objective.kl_warmup_steps)
    if kl_warmup > total:
        lines.append(
            f"objective.kl_warmup_steps={kl_warmup} is longer than the whole training "
            f"({total} steps): the KL weight ends at {total / kl_warmup:.3g} x "
            f"objective.beta, never reaching it"
        )
    warmup = int(config.optimizer.warmup_steps)
    if config.optimizer.schedule == "warmup_cosine" and warmup >= total:
        lines.append(
            f"optimizer.warmup_steps={warmup} is longer than the whole training ({total} "
            f"steps): the learning rate ends at {(total - 1) / warmup:.3g} x "
            "optimizer.learning_rate, never reaching it, and never decays"
        )
    return lines
