"""``vae_jax/training/warmups.py``: a warm-up longer than the whole training is named in one
warning line, by the function and by the training command."""

from __future__ import annotations

import pytest

from experiments.configs import tiny
from vae_jax.training import warmups

# --- 8. warm-ups longer than the training ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "schedule", "warned"),
    [
        ("objective.kl_warmup_steps", 33, "constant", False),  # ends at the last step
        ("objective.kl_warmup_steps", 34, "constant", True),
        ("optimizer.warmup_steps", 32, "warmup_cosine", False),  # the peak at the last step
        ("optimizer.warmup_steps", 33, "warmup_cosine", True),
        ("optimizer.warmup_steps", 500, "constant", False),  # no warm-up to speak of
    ],
)
def test_a_warmup_longer_than_the_training_is_named_in_one_line(field, value, schedule, warned):
    config = tiny.get_config()  # 3 epochs of 11 steps on 540 examples: 33 steps
    config.optimizer.schedule = schedule
    group, name = field.split(".")
    config[group][name] = value
    lines = warmups.warmup_warnings(config, num_train_examples=540)
    assert len(lines) == int(warned)
    if warned:
        assert lines[0].startswith(f"{field}={value} is longer than the whole training (33 steps)")
        assert "\n" not in lines[0]


@pytest.mark.slow
def test_training_warns_of_a_warmup_longer_than_the_training(tiny_config, tmp_path, caplog):
    from vae_jax.single_run import train_and_evaluate

    tiny_config.training.num_epochs = 1
    tiny_config.objective.kl_warmup_steps = 100
    with caplog.at_level("WARNING"):
        train_and_evaluate(tiny_config, tmp_path / "run")
    assert "objective.kl_warmup_steps=100 is longer than the whole training (11 steps): " in (
        caplog.text
    )
