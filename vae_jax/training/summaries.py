"""From per-step metrics of an epoch to one record, and the first non-finite value."""

from __future__ import annotations

import numpy as np

# Averaged over examples (steps weighted by their number of unmasked examples).
PER_EXAMPLE = ("loss", "elbo", "log_likelihood", "kl", "iwae_bound")
# Reported at the epoch's last step.
LAST_VALUE = ("learning_rate", "beta")
# Checked first when looking for a non-finite value: the one that explains the others.
CHECK_ORDER = ("loss", "grad_norm")


def summarize_epoch(step_metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """``train/<name>`` values of one epoch from arrays with one entry per step."""
    weights = np.asarray(step_metrics["num_examples"], np.float64)
    summary = {}
    for name, values in sorted(step_metrics.items()):
        values = np.asarray(values, np.float64)
        if name == "num_examples":
            summary["train/num_examples"] = float(values.sum())
        elif name in PER_EXAMPLE:
            summary[f"train/{name}"] = float(np.sum(values * weights) / np.sum(weights))
        elif name in LAST_VALUE:
            summary[f"train/{name}"] = float(values[-1])
        else:
            summary[f"train/{name}"] = float(values.mean())
    return summary


def first_non_finite(step_metrics: dict[str, np.ndarray]) -> tuple[int, str, float] | None:
    """``(step index within the epoch, metric, value)`` of the first non-finite metric."""
    names = [n for n in CHECK_ORDER if n in step_metrics]
    names += sorted(set(step_metrics) - set(names))
    num_steps = len(np.asarray(step_metrics[names[0]]))
    for index in range(num_steps):
        for name in names:
            value = float(np.asarray(step_metrics[name])[index])
            if not np.isfinite(value):
                return index, name, value
    return None
