"""The statistics of every sweep table: a metric's mean, standard deviation and 95%
interval over seeds (Student's t), the rows of a table, which way a metric is better, the
best cell, and a mean curve over runs. Numbers only: no files, no text."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

# Substrings of a metric's name that say which way is better; "lower" is checked first.
LOWER_IS_BETTER = ("nll", "bits_per_dim", "loss")
HIGHER_IS_BETTER = ("elbo", "log_likelihood", "iwae_bound", "active_units", "mutual_information")


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation (ddof=1) and the 95% t-interval of the mean."""
    array = np.asarray(values, np.float64)
    n = array.size
    mean = float(array.mean())
    if n < 2:
        return {"mean": mean, "std": float("nan"), "ci95_low": float("nan"),
                "ci95_high": float("nan"), "n": n}  # fmt: skip
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def metric_rows(per_seed: dict[int, dict[str, float]], seeds: list[int]) -> dict[str, dict]:
    """Per metric (sorted by name): its value for each seed (None where a seed is not
    done or lacks it) and ``summarize`` of the values there are."""
    names = sorted(set().union(*(m.keys() for m in per_seed.values())))
    return {
        name: {
            "per_seed": {str(s): per_seed.get(s, {}).get(name) for s in seeds},
            **summarize([m[name] for m in per_seed.values() if name in m]),
        }
        for name in names
    }


def direction(metric: str) -> str | None:
    """``"lower"`` or ``"higher"`` (which is better) from the metric's name, or None."""
    if any(part in metric for part in LOWER_IS_BETTER):
        return "lower"
    if any(part in metric for part in HIGHER_IS_BETTER):
        return "higher"
    return None


def best(rows: list[dict]) -> dict:
    """Per metric with a direction, the row with the best mean (the first on a tie); rows
    without the metric or with a mean that is not finite are not candidates."""
    names = sorted({name for row in rows for name in row["metrics"] if direction(name)})
    winners = {}
    for name in names:
        candidates = [
            r for r in rows if name in r["metrics"] and math.isfinite(r["metrics"][name]["mean"])
        ]
        if not candidates:
            continue
        sign = 1.0 if direction(name) == "lower" else -1.0
        winner = min(candidates, key=lambda r: sign * r["metrics"][name]["mean"])
        winners[name] = {
            "cell": winner["name"],
            "values": winner["values"],
            "mean": winner["metrics"][name]["mean"],
            "direction": direction(name),
        }
    return winners


def mean_curve(per_run: list[dict[int, float]]) -> tuple[list[int], list[float]]:
    """The mean over runs of ``{epoch: value}`` at the epochs every run has (a mean over a
    changing set of runs would jump where one run's record is absent)."""
    if not per_run:
        return [], []
    epochs = sorted(set.intersection(*(set(r) for r in per_run)))
    return epochs, [float(np.mean([r[e] for r in per_run])) for e in epochs]
