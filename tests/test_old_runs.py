"""A run directory written by an older vae-jax (``tests/data/old_run``: the ``tiny`` config,
seed 0, 2 epochs, trained at commit a7e8206 on the generated data of ``tiny_data_dir``)
resumes, evaluates, reproduces and loads with today's code: every config field added
since takes the value the old code used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_helpers import assert_same_metrics, assert_same_params, final_params

import vae_jax
from experiments.configs import base
from vae_jax.core import networks
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.reproduce import reproduce
from vae_jax.rundir import files
from vae_jax.single_run import train_and_evaluate
from vae_jax.training import resume

DATA = Path(__file__).parent / "data"
OLD_RUN = DATA / "old_run"
OLD_COMMIT = "a7e8206"
# Every field of experiments/configs/base.py at the first release (88a2eca).
FIRST_RELEASE_FIELDS = (DATA / "first_release_config_fields.txt").read_text().split()


@pytest.fixture
def old_run(tmp_path) -> Path:
    copy = tmp_path / "old_run"
    shutil.copytree(OLD_RUN, copy)
    return copy


def test_the_old_run_is_what_this_file_says_and_small():
    manifest = json.loads((OLD_RUN / files.MANIFEST_FILE).read_text())
    assert manifest["git"]["commit"].startswith(OLD_COMMIT)
    recorded = resume.flatten(json.loads((OLD_RUN / files.CONFIG_FILE).read_text()))
    assert "model.upper_latent_dims" not in recorded  # fields added since are absent
    size = sum(p.stat().st_size for p in OLD_RUN.rglob("*") if p.is_file())
    assert size < 1024 * 1024


def test_every_field_added_since_the_first_release_has_the_value_the_old_code_used():
    now = set(resume.flatten(resume.config_as_json(base.get_config())))
    added = now - set(FIRST_RELEASE_FIELDS)
    assert added == set(files.ADDED_CONFIG_FIELDS)
    # The values of the old code: one Gaussian layer under N(0, I), float32, JAX's own
    # matmul precision, the plain reparameterization gradient.
    old = files.ADDED_CONFIG_FIELDS
    assert old["model.upper_latent_dims"] == []
    assert old["model.inference"] == "bottom_up"
    assert old["model.prior"] == "standard_normal"
    assert old["model.posterior"] == "gaussian"
    assert old["objective.gradient_estimator"] == "reparameterization"
    assert old["model.compute_dtype"] == old["evaluation.compute_dtype"] == "float32"
    assert old["runtime.matmul_precision"] == "default"
    # AIS (never run by an old run): the defaults a new run gets.
    config = base.get_config()
    for field, value in old.items():
        if field.startswith(("evaluation.ais_", "evaluation.bdmc_")):
            assert config.evaluation[field.partition(".")[2]] == value, field


def test_an_old_run_loads(old_run):
    vae, params, config = vae_jax.load_run(old_run)
    assert list(config.model.upper_latent_dims) == []
    assert config.model.inference == "bottom_up"
    assert vae.latent_dim == 4
    assert len(vae.latent_layers) == 1
    recorded = json.loads((old_run / files.REPORT_FILE).read_text())["num_parameters"]
    assert networks.num_parameters(params) == recorded


def test_an_old_run_resumes_to_the_bits_of_a_run_trained_today(old_run, tiny_run, tiny_config):
    """Resumed from its epoch 2 to epoch 3 (the data now elsewhere), it ends where today's
    3-epoch run ends, bit for bit."""
    report = train_and_evaluate(tiny_config, old_run)
    assert report["epochs_completed"] == 3
    assert_same_params(final_params(old_run), final_params(tiny_run.workdir))
    assert_same_metrics(old_run, tiny_run.workdir)


def test_an_old_run_evaluates_and_reproduces(old_run, tiny_data_dir):
    result = evaluate_run(old_run, num_importance_samples=2, make_figures=False,
                          data_dir=tiny_data_dir)  # fmt: skip
    assert result["checkpoint"]["epoch"] == 2
    assert result["compute_dtype"] == "float32"
    outcome = reproduce(old_run, data_dir=tiny_data_dir)
    assert outcome.reproduced, outcome.difference
    assert any(f"trained at commit {OLD_COMMIT}" in w for w in outcome.warnings)
