"""The reproduced table: its configs hold the papers' protocol, and the command trains,
evaluates once, reuses finished work and writes the page (experiments/reproductions)."""

import json
import re

import numpy as np
import pytest
from scipy import stats

from experiments.configs import tiny
from experiments.reproductions import experiment, page
from experiments.reproductions import rows as rows_lib
from vae_jax import config_checks
from vae_jax.errors import ConfigError
from vae_jax.run import files


@pytest.mark.parametrize("row", rows_lib.ROWS + rows_lib.MNIST_ROWS, ids=lambda r: r.name)
def test_every_row_config_is_valid_and_follows_the_protocol(row):
    """The settings of density_estimation.py's defaults and the issue: 40 latent units per
    layer, gated 300-unit layers, AdamNormGrad at 5e-4, batches of 100, warm-up over 100
    epochs, patience 50 of at most 2,000 epochs, 50,000 / 10,000 images, K = 5,000; the
    docstring names the published number the module holds."""
    config = row.config()
    config_checks.check_config(config)
    assert config.model.latent_dim == 40
    assert config.model.hidden_sizes == (300, 300)
    assert config.model.activation == "gated"
    assert config.model.kernel_init == "he_normal"
    assert tuple(config.model.log_variance_range) == (-6.0, 2.0)
    assert config.optimizer.name == "adam_normgrad"
    assert config.optimizer.learning_rate == 5e-4
    assert config.training.batch_size == 100
    assert config.objective.kl_warmup_epochs == 100
    assert config.training.early_stopping_patience == 50
    assert config.training.num_epochs == 2000
    assert round(60000 * config.data.validation_fraction) == 10000
    assert config.data.validation_order == "last"
    assert config.data.binarization == "dynamic"
    assert config.evaluation.num_importance_samples == 5000
    assert config.data.limit_test == 0
    hierarchical = "hvae" in row.name
    assert config.model.upper_latent_dims == ((40,) if hierarchical else ())
    assert (config.model.prior == "vampprior") == ("vampprior" in row.name)
    assert (config.model.architecture == "gated_conv") == ("conv" in row.name)
    if row.published is not None:
        mean, plus_minus = row.published
        assert f"{mean:.2f} ± {plus_minus:.2f}" in row.module.__doc__


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["fashion_vea:3"], "unknown row 'fashion_vea'"),
        (["fashion_vae:x"], "give row:N with an integer N"),
        (["fashion_vae:0"], "N must be >= 1"),
    ],
)
def test_bad_budget_flags_are_one_line_naming_the_flag(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        experiment.parse_row_values(values, "max_epochs")
    assert "--max_epochs" in str(error.value)
    assert "\n" not in str(error.value)


def _seed(nll, **fields):
    seed = dict(
        test_nll=nll, test_nll_standard_error=0.3, stopped_early=True, max_epochs=2000,
        test_images=10000, importance_samples=5000, epochs_trained=300, best_epoch=249,
        train_seconds=600.0, evaluation_seconds=60.0, train_images=50000,
    )  # fmt: skip
    return {**seed, **fields}


def test_a_row_summary_is_the_mean_and_t_interval_over_seeds():
    """Three seeds: their mean, and the 95% Student-t half-width from scipy; the difference
    to the published number, within the two intervals or not; no budget mark."""
    row = rows_lib.BY_NAME["fashion_vae"]
    nlls = [229.0, 229.6, 228.9]
    summary = experiment.summarize_row(row, [_seed(v) for v in nlls])
    low, high = stats.t.interval(0.95, 2, loc=np.mean(nlls), scale=stats.sem(nlls))
    assert summary["ours"] == pytest.approx(np.mean(nlls))
    assert summary["ours_interval_95"] == pytest.approx((high - low) / 2)
    assert summary["difference"] == pytest.approx(np.mean(nlls) - 228.70)
    assert summary["within_intervals"]
    assert summary["budget"] == []
    far = experiment.summarize_row(row, [_seed(v + 3.0) for v in nlls])
    assert not far["within_intervals"]


def test_a_row_on_a_smaller_budget_is_marked_with_it():
    row = rows_lib.BY_NAME["fashion_vae"]
    seeds = [_seed(240.0, stopped_early=False, max_epochs=30, test_images=500)]
    summary = experiment.summarize_row(row, seeds)
    assert summary["budget"] == ["training", "test images"]
    assert summary["ours_interval_95"] is None  # one seed: no interval over runs
    assert "**budget: 30 epochs, 500 test images**" in page.table({"rows": [summary]})


def _tiny_row(data_dir):
    """The VAE row's protocol on the tiny generated data: a few epochs, a small model."""

    def config():
        config = rows_lib.BY_NAME["fashion_vae"].module.get_config()
        reference = tiny.get_config()
        config.data.data_dir = data_dir
        config.data.limit_train = 600
        config.data.limit_test = 10
        config.model.hidden_sizes = (16,)
        config.model.latent_dim = 3
        config.training.batch_size = 50
        config.objective.kl_warmup_epochs = 2
        config.training.early_stopping_patience = 1
        config.optimizer.learning_rate = 0.03
        config.evaluation.num_importance_samples = 8
        config.evaluation.importance_chunk_size = 8
        config.evaluation.batch_size = 5
        config.evaluation.num_figure_examples = reference.evaluation.num_figure_examples
        return config

    return config


@pytest.mark.parametrize("field", experiment.RECORDED_VERSIONS)
def test_a_started_row_resumes_with_the_versions_it_recorded(tmp_path, field):
    """A row's run started before a version field existed (data.binarization_version,
    model.mixture_density_version: its config.json has no such field) resumes with version
    1, one recorded with 2 with 2; a new run takes the row's config (2)."""
    from vae_jax.training import resume

    group, name = field.split(".")
    row_config = experiment.row_config(
        rows_lib.BY_NAME["fashion_vampprior"], 0, experiment.Budget(), data_dir=None
    )
    assert row_config[group][name] == 2
    new = experiment.keep_recorded_versions(row_config, tmp_path / "new")
    assert new[group][name] == 2
    for recorded, expected in ((None, 1), (2, 2), (1, 1)):
        workdir = tmp_path / f"started_{recorded}"
        workdir.mkdir()
        config_json = resume.config_as_json(tiny.get_config())
        if recorded is None:
            del config_json[group][name]
        else:
            config_json[group][name] = recorded
        files.write_json(workdir / files.CONFIG_FILE, config_json)
        files.write_json(workdir / files.MANIFEST_FILE, {})
        config = experiment.keep_recorded_versions(tiny.get_config(), workdir)
        assert config[group][name] == expected


@pytest.mark.slow
def test_the_command_trains_evaluates_once_and_writes_the_page(
    tiny_data_dir, tmp_path, monkeypatch
):
    """Two seeds of a tiny row: each run trained and evaluated, its numbers in the JSON
    equal to its own report's; the page has the row, the command and the figure; running
    again trains nothing and evaluates nothing (the reports are unchanged)."""
    row = rows_lib.BY_NAME["fashion_vae"]
    monkeypatch.setattr(rows_lib.Row, "config", lambda self: _tiny_row(tiny_data_dir)())
    budgets = {"fashion_vae": experiment.Budget(epochs=6, samples=8)}
    results = experiment.run(
        tmp_path, ["fashion_vae"], [0, 1], budgets, data_dir=None, command="the command"
    )
    (summary,) = results["rows"]
    for seed in summary["seeds"]:
        report = files.read_json(tmp_path / seed["workdir"] / files.REPORT_FILE)
        assert seed["test_nll"] == report["evaluation"]["test_nll"]["nats"]
        assert seed["evaluated_epoch"] == report["early_stopping"]["best_epoch"]
        assert seed["importance_samples"] == 8
    assert [s["seed"] for s in summary["seeds"]] == [0, 1]
    assert (tmp_path / "fashion_vae-seed1").is_dir()
    assert summary["ours"] == pytest.approx(np.mean([s["test_nll"] for s in summary["seeds"]]))
    written = page.write(results, tmp_path, tmp_path / "docs" / "reproductions.md")
    markdown = (tmp_path / "docs" / "reproductions.md").read_text()
    assert row.label in markdown
    assert "the command" in markdown
    assert "![" in markdown
    assert (tmp_path / "docs" / "reproductions.png").stat().st_size > 0
    assert json.loads((tmp_path / "docs" / "reproductions.json").read_text()) == results
    assert len(written) == 6
    reports = {s["workdir"]: (tmp_path / s["workdir"] / files.REPORT_FILE).read_bytes()
               for s in summary["seeds"]}  # fmt: skip
    again = experiment.run(
        tmp_path, ["fashion_vae"], [0, 1], budgets, data_dir=None, command="the command"
    )
    assert again["rows"][0]["ours"] == summary["ours"]
    for workdir, content in reports.items():
        assert (tmp_path / workdir / files.REPORT_FILE).read_bytes() == content
