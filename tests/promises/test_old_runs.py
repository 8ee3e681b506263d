"""A run directory written by an older vae-jax (``tests/data/old_run``: the ``tiny`` config,
seed 0, 2 epochs, trained at commit a7e8206 on the generated data of ``tiny_data_dir``)
resumes, evaluates, reproduces and loads with today's code: every config field added
since takes the value the old code used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vae_jax
from experiments.configs import base
from tests.helpers.runs import assert_same_metrics, assert_same_params, final_params
from vae_jax import data
from vae_jax.core import networks
from vae_jax.errors import ConfigError, DataError
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.reproduce import reproduce
from vae_jax.run import files, loading
from vae_jax.run.directory import RunDirectory
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
    assert old["data.binarization_version"] == 1  # a float32 uniform per pixel
    assert old["training.epoch_unroll"] == 1  # one step per iteration of the epoch's loop
    # AIS (never run by an old run): the defaults a new run gets.
    config = base.get_config()
    for field, value in old.items():
        if field.startswith(("evaluation.ais_", "evaluation.bdmc_")):
            assert config.evaluation[field.partition(".")[2]] == value, field


@pytest.mark.slow
def test_an_old_run_loads(old_run):
    vae, params, config = vae_jax.load_run(old_run)
    assert list(config.model.upper_latent_dims) == []
    assert config.model.inference == "bottom_up"
    assert vae.latent_dim == 4
    assert len(vae.latent_layers) == 1
    recorded = json.loads((old_run / files.REPORT_FILE).read_text())["num_parameters"]
    assert networks.num_parameters(params) == recorded


@pytest.mark.slow
def test_an_old_run_resumes_to_the_bits_of_a_run_trained_today(old_run, tiny_config, tmp_path):
    """Resumed from its epoch 2 to epoch 3 (the data now elsewhere) with the binarization it
    recorded (version 1: it has no such field), it ends where today's 3-epoch run with that
    binarization ends, bit for bit."""
    tiny_config.data.binarization_version = 1
    today = tmp_path / "today"
    train_and_evaluate(tiny_config, today)
    report = train_and_evaluate(tiny_config, old_run)
    assert report["epochs_completed"] == 3
    assert_same_params(final_params(old_run), final_params(today))
    assert_same_metrics(old_run, today)


def test_an_old_run_reads_as_binarization_version_1_and_draws_as_it_did(old_run, tiny_data_dir):
    """No data.binarization_version in its config: it reads as version 1, its data record is
    the one it recorded (so resume and evaluation find no difference), and a training step
    binarizes with jax.random.bernoulli(fold_in(binarize, t), x / 255), the draw it made."""
    recorded = json.loads((old_run / files.CONFIG_FILE).read_text())
    assert "binarization_version" not in recorded["data"]
    config = loading.load_config(old_run)
    assert config.data.binarization_version == 1
    config.data.data_dir = tiny_data_dir
    dataset = data.load_dataset(config)
    assert dataset.preprocessing.binarization_version == 1
    manifest = json.loads((old_run / files.MANIFEST_FILE).read_text())
    assert dataset.record["protocol"] == manifest["data"]["protocol"]
    assert files.protocol_difference(manifest["data"], dataset.record) is None
    binarize_stream = jax.random.fold_in(jax.random.key(recorded["seed"]), 2)
    stored = dataset.train.images[:8]
    for step in (0, 23):
        key = jax.random.fold_in(binarize_stream, step)
        drawn = jax.random.bernoulli(key, stored.astype(jnp.float32) / 255.0)
        np.testing.assert_array_equal(
            dataset.preprocessing.train_input(stored, key), drawn.astype(jnp.float32)
        )


@pytest.mark.slow
def test_an_old_run_resumed_with_binarization_version_2_is_refused_in_one_line(
    old_run, tiny_config
):
    """Today's default (version 2) would draw other bits from the same keys: the resume is
    refused in one line before anything is written; the data record tells as well."""
    before = {p: p.read_bytes() for p in sorted(old_run.rglob("*")) if p.is_file()}
    assert tiny_config.data.binarization_version == 2
    with pytest.raises(ConfigError) as refused:
        train_and_evaluate(tiny_config, old_run)
    assert str(refused.value) == (
        "cannot resume: data.binarization_version is 2 but the run in this workdir used 1; "
        "use a new --workdir or the same value"
    )
    after = {p: p.read_bytes() for p in sorted(old_run.rglob("*")) if p.is_file()}
    assert after == before
    version_2 = data.load_dataset(tiny_config).record
    with pytest.raises(DataError) as different_data:
        RunDirectory(old_run, seed=0, keep_checkpoints=3).check_same_data(version_2)
    assert str(different_data.value) == (
        f"cannot resume {old_run.absolute()}: the data's protocol.binarization_version is 2 "
        "now but None in the run's manifest"
    )


@pytest.mark.slow
def test_an_old_run_evaluates_and_reproduces(old_run, tiny_data_dir):
    result = evaluate_run(old_run, num_importance_samples=2, make_figures=False,
                          data_dir=tiny_data_dir)  # fmt: skip
    assert result["checkpoint"]["epoch"] == 2
    assert result["compute_dtype"] == "float32"
    outcome = reproduce(old_run, data_dir=tiny_data_dir)
    assert outcome.reproduced, outcome.difference
    assert any(f"trained at commit {OLD_COMMIT}" in w for w in outcome.warnings)
