"""``vae_jax/training/resume.py``: a resume may change only the fields that leave the model,
the data and the optimization unchanged; every other change is refused, naming the
field."""

from __future__ import annotations

import re

import pytest

from experiments.configs import tiny
from tests.helpers.runs import apply_overrides
from tests.helpers.tiny import tiny_with
from vae_jax.errors import ConfigError
from vae_jax.training import resume


def get_field(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


# --- Resume: only fields that leave the model, data and optimization unchanged may change. ---

# By the README: stopping, checkpointing, where the data live, evaluation and runtime.
MAY_CHANGE_ON_RESUME = {
    "training.num_epochs",
    "training.checkpoint_every_epochs",
    "training.keep_checkpoints",
    "training.eval_batch_size",
    "data.data_dir",
    "evaluation.num_importance_samples",
    "evaluation.importance_chunk_size",
    "evaluation.batch_size",
    "evaluation.num_elbo_samples",
    "evaluation.num_figure_examples",
    "evaluation.compute_dtype",
    "evaluation.ais_num_steps",
    "evaluation.ais_num_chains",
    "evaluation.ais_leapfrog_steps",
    "evaluation.ais_num_examples",
    "evaluation.ais_chain_chunk_size",
    "evaluation.ais_schedule",
    "evaluation.ais_initial",
    "evaluation.ais_target_acceptance",
    "evaluation.bdmc_num_examples",
    "runtime.debug_key_reuse",
    "runtime.deterministic_gpu_ops",
    "runtime.num_devices",
    # Inert with tiny's standard normal prior (resume.INERT_UNLESS); with a mixture prior a
    # change is refused (tests/model/test_mixture_density.py).
    "model.mixture_density_version",
}
CONFIG_LEAVES = sorted(resume.flatten(resume.config_as_json(tiny.get_config())))


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "_changed"
    return (*value, 7)  # a tuple field (stored as a list in config.json)


def test_the_fields_that_may_change_on_resume_exist():
    """The list above names real config fields (a renamed field must be renamed there)."""
    assert MAY_CHANGE_ON_RESUME <= set(CONFIG_LEAVES)
    assert len(CONFIG_LEAVES) > 40


@pytest.mark.parametrize("field", CONFIG_LEAVES)
def test_resume_refuses_every_field_that_changes_the_run(field):
    """resume.py: "only fields that leave the model, the data and the optimization
    unchanged may differ"; the error names the field."""
    recorded = resume.config_as_json(tiny.get_config())
    config = tiny.get_config()
    apply_overrides(config, {field: _changed(get_field(config, field))})
    if field in MAY_CHANGE_ON_RESUME:
        assert resume.check_resumable(recorded, config) == [field]
    else:
        with pytest.raises(ConfigError, match=rf"^cannot resume: {re.escape(field)} is "):
            resume.check_resumable(recorded, config)


def test_resume_checks_every_changed_field_not_only_the_first():
    """Fields are checked in order: an allowed change before a forbidden one must not end
    the check, and every allowed change is reported."""
    recorded = resume.config_as_json(tiny_with())
    allowed_then_forbidden = tiny_with(**{"data.data_dir": "/elsewhere", "model.latent_dim": 5})
    with pytest.raises(ConfigError, match=r"cannot resume: model\.latent_dim is 5"):
        resume.check_resumable(recorded, allowed_then_forbidden)
    two_allowed = tiny_with(**{"evaluation.batch_size": 7, "training.keep_checkpoints": 9})
    assert resume.check_resumable(recorded, two_allowed) == [
        "evaluation.batch_size",
        "training.keep_checkpoints",
    ]


def test_resume_refuses_a_new_length_when_the_schedule_depends_on_it():
    """training.num_epochs sets the warmup_cosine schedule's decay_steps: changing it on
    resume would change every later learning rate. With a constant schedule it may change."""
    recorded = resume.config_as_json(tiny_with(**{"optimizer.schedule": "warmup_cosine"}))
    config = tiny_with(**{"optimizer.schedule": "warmup_cosine", "training.num_epochs": 6})
    with pytest.raises(ConfigError, match=r"cannot resume: training\.num_epochs is 6 .*"):
        resume.check_resumable(recorded, config)
    constant = resume.config_as_json(tiny_with())
    assert resume.check_resumable(constant, tiny_with(**{"training.num_epochs": 6})) == [
        "training.num_epochs"
    ]
