"""The results table (python -m experiments.results): one sweep per model, the numbers
taken from each seed's evaluation, intervals recomputed with scipy, checks before work,
and a second run that evaluates nothing again."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from experiments.results import experiment, models, table
from vae_jax.errors import ConfigError
from vae_jax.run import files


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_data_dir):
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    workdir = tmp_path_factory.mktemp("results")
    outcome = experiment.run_results(
        config, workdir, model_names=["two_layer", "vae"], seeds=[0, 1], epochs=1,
        num_importance_samples=8, base_config_name="tiny", command="python -m experiments.results",
    )  # fmt: skip
    return config, workdir, outcome


@pytest.mark.slow
def test_each_row_is_its_seeds_evaluations_with_a_t_interval(results):
    """Rows in the table's order; the NLL per seed is that run's report.json, the interval
    the 95% Student-t interval of their mean; a hierarchy reports each layer."""
    _, workdir, outcome = results
    rows = outcome["models"]
    assert [row["name"] for row in rows] == ["vae", "two_layer"]
    for row in rows:
        per_seed = [
            files.read_json(workdir / row["name"] / f"seed_{s}" / files.REPORT_FILE)["evaluation"][
                "test_nll"
            ]["nats"]
            for s in (0, 1)
        ]
        assert list(row["test_nll"]["per_seed"].values()) == per_seed
        half = stats.t.ppf(0.975, 1) * np.std(per_seed, ddof=1) / math.sqrt(2)
        np.testing.assert_allclose(row["test_nll"]["mean"], np.mean(per_seed))
        np.testing.assert_allclose(row["test_nll"]["ci95_high"], np.mean(per_seed) + half)
        assert row["epochs"] == 1
        assert row["num_importance_samples"] == 8
        assert row["train_examples_per_second"] > 0
        assert row["validation_elbo"]["epochs"] == [1]
    two_layer = rows[1]
    assert [layer["dimensions"] for layer in two_layer["layers"]] == [4, 10]
    assert two_layer["latent_dimensions"] == 14
    assert rows[0]["layers"] is None


@pytest.mark.slow
def test_a_two_layer_run_reports_active_units_and_kl_per_layer(results):
    """The two-layer model's runs (trained, validated and evaluated by the sweep): active
    units and KL per layer add up to the whole code's, and report.md has a row per layer."""
    _, workdir, _ = results
    run = workdir / "two_layer" / "seed_0"
    evaluation = files.read_json(run / files.REPORT_FILE)["evaluation"]
    layers = evaluation["layers"]
    assert [layer["dimensions"] for layer in layers] == [4, 10]
    assert sum(layer["active_units"] for layer in layers) == evaluation["latent"]["active_units"]
    np.testing.assert_allclose(
        sum(layer["kl"] for layer in layers), evaluation["test_elbo"]["kl"], rtol=1e-6
    )
    assert evaluation["test_elbo"]["kl_estimator"] == "mc"
    assert evaluation["latent"]["kl_per_dim"] is None
    assert -evaluation["test_nll"]["nats"] > evaluation["test_elbo"]["elbo"] - 1.0
    assert "layer z_2: active units, KL (nats)" in (run / files.REPORT_MARKDOWN).read_text()
    records = (run / files.METRICS_FILE).read_text().splitlines()
    assert np.isfinite(json.loads(records[-1])["validation/kl"])  # the Monte Carlo KL


@pytest.mark.slow
def test_the_page_shows_the_command_the_rows_and_the_figure(results, tmp_path):
    _, workdir, outcome = results
    pages = experiment.write(outcome, workdir, tmp_path / "docs" / "results.md", notes="## Notes")
    page = pages[1].read_text()
    assert "python -m experiments.results" in page
    assert "**1 epoch**" in page
    assert f"trained by the code at commit `{outcome['models'][0]['commit']}`" in page
    assert "| VAE (ELBO, analytic KL) | Kingma & Welling 2014 |" in page
    assert "(z_1: " in page
    assert "![test NLL and validation ELBO of each model](results.png)" in page
    assert page.rstrip().endswith("## Notes")
    for folder in (workdir, tmp_path / "docs"):
        assert (folder / "results.png").stat().st_size > 10_000
        assert files.read_json(folder / "results.json")["models"] == outcome["models"]


@pytest.mark.slow
def test_a_second_run_evaluates_nothing_again(results, monkeypatch):
    config, workdir, outcome = results

    def refuse(*args, **kwargs):
        raise AssertionError("run_sweep called for a model already evaluated")

    monkeypatch.setattr(experiment, "run_sweep", refuse)
    again = experiment.run_results(
        config, workdir, model_names=["vae", "two_layer"], seeds=[0, 1], epochs=1,
        num_importance_samples=8,
    )  # fmt: skip
    assert again["models"] == outcome["models"]
    assert table.is_evaluated(workdir / "vae", [0, 1], 8, 1)
    assert not table.is_evaluated(workdir / "vae", [0, 1], 16, 1)  # another K: not done
    assert not table.is_evaluated(workdir / "vae", [0, 1], 8, 2)  # more epochs: not done
    assert not table.is_evaluated(workdir / "vae", [0, 1, 2], 8, 1)  # another seed: not done


@pytest.mark.slow
def test_every_models_config_is_checked_before_any_model_trains(tiny_config, tmp_path):
    """Free bits are fine for the VAE but refused for IWAE, which comes second: the command
    fails in one line before the VAE's sweep writes anything."""
    tiny_config.objective.free_bits = 0.5
    with pytest.raises(
        ConfigError, match=r"^objective\.free_bits=0\.5 applies to the elbo"
    ) as error:
        experiment.run_results(
            tiny_config, tmp_path, model_names=[], seeds=[0], epochs=1, num_importance_samples=8
        )
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match=r"^--models=nope: unknown; choose from vae,"):
        models.select(["vae", "nope"])


@pytest.mark.parametrize(
    ("mean", "low", "high", "expected"),
    [
        (90.0, 89.0, 91.0, "10.00 nats better than the VAE (intervals apart)"),
        (101.0, 99.5, 102.5, "+1.00 nats against the VAE: not told apart (intervals overlap)"),
        (103.0, 102.0, 104.0, "3.00 nats worse than the VAE (intervals apart)"),
    ],
)
def test_a_verdict_needs_the_intervals_apart(mean, low, high, expected):
    baseline = {"test_nll": {"mean": 100.0, "ci95_low": 99.0, "ci95_high": 101.0}}
    row = {"test_nll": {"mean": mean, "ci95_low": low, "ci95_high": high}}
    assert table.verdict(row, baseline) == expected
