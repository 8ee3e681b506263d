"""``vae_jax/training/summaries.py``: an epoch's record from its steps' metrics (per-example
means weighted by unmasked examples, learning rate and beta at the last step) and the first
non-finite value."""

from __future__ import annotations

import numpy as np


def summarize_epoch(step_metrics):
    from vae_jax.training import summaries

    return summaries.summarize_epoch(step_metrics)


def first_non_finite(step_metrics):
    from vae_jax.training import summaries

    return summaries.first_non_finite(step_metrics)


def test_epoch_summary_weights_steps_by_unmasked_examples_and_takes_the_last_step():
    """summaries.py: per-example means weighted by each step's unmasked examples; learning
    rate and beta at the epoch's last step; num_examples summed; other metrics averaged."""
    num_examples = [50.0, 50.0, 40.0]  # 140 examples: the last batch is padded
    per_example = {
        "loss": [1.0, 2.0, 10.0],
        "elbo": [-1.5, -2.5, -12.0],
        "log_likelihood": [-1.0, -2.0, -11.0],
        "kl": [0.5, 0.5, 1.0],
        "iwae_bound": [-1.25, -2.25, -11.5],
    }
    last_step = {"learning_rate": [1e-4, 5e-4, 9e-4], "beta": [0.2, 0.4, 0.6]}
    step_metrics = {
        name: np.asarray(values, np.float32)
        for name, values in {
            **per_example,
            **last_step,
            "grad_norm": [1.0, 2.0, 6.0],
            "num_examples": num_examples,
        }.items()
    }
    summary = summarize_epoch(step_metrics)
    for name, values in per_example.items():
        weighted = sum(n * float(np.float32(v)) for n, v in zip(num_examples, values, strict=True))
        expected = weighted / 140
        assert abs(expected - np.mean(values)) > 1e-3  # an unweighted mean would show
        np.testing.assert_allclose(summary[f"train/{name}"], expected, rtol=1e-12, err_msg=name)
    for name, values in last_step.items():
        assert summary[f"train/{name}"] == float(np.float32(values[-1])), name
    assert summary["train/num_examples"] == 140.0
    np.testing.assert_allclose(summary["train/grad_norm"], 3.0, rtol=1e-12)
    assert set(summary) == {f"train/{name}" for name in step_metrics}


def test_the_first_non_finite_value_is_found_loss_first():
    """The non-finite stop names the earliest step, and at that step the loss (then the
    gradient norm) before the metrics it explains."""
    finite = {name: np.ones(4, np.float32) for name in ("elbo", "grad_norm", "kl", "loss")}
    assert first_non_finite(finite) is None
    everything_at_2 = {name: np.array([1, 1, np.nan, np.nan], np.float32) for name in finite}
    assert first_non_finite(everything_at_2)[:2] == (2, "loss")
    only_the_gradient = {**finite, "grad_norm": np.array([1, np.inf, 1, 1], np.float32)}
    assert first_non_finite(only_the_gradient) == (1, "grad_norm", float("inf"))
    later_loss = {**everything_at_2, "kl": np.array([1, np.nan, 1, 1], np.float32)}
    assert first_non_finite(later_loss)[:2] == (1, "kl")
