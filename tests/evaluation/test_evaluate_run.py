"""``vae_jax/evaluation/evaluate_run.py``: evaluating a trained run: the report (the protocol,
the test NLL in nats and bits per dimension, the mutual information's ceiling), the figures,
the timed phases, bfloat16 evaluation, the command line's errors."""

from __future__ import annotations

import json
import math
import shutil
import sys
import types

import numpy as np
import pytest
from PIL import Image

from experiments.configs import tiny
from tests.helpers.runs import run
from vae_jax.errors import UserFacingError
from vae_jax.evaluation import report_files
from vae_jax.evaluation.evaluate_run import evaluate_run
from vae_jax.single_run import train_and_evaluate


@pytest.mark.slow
def test_report_shows_the_mutual_information_ceiling_and_saturation(evaluated_2d_run):
    """report.json holds the ceiling log N, the saturation flag by the rule and the rule;
    report.md prints the estimate beside its ceiling, says when it is saturated, and
    states the rule."""
    workdir, result = evaluated_2d_run
    latent = json.loads((workdir / "report.json").read_text())["evaluation"]["latent"]
    estimate, num = latent["mutual_information_nats"], result["num_examples"]
    assert latent["mutual_information_upper_bound_log_n"] == pytest.approx(np.log(num))
    assert latent["mutual_information_saturated"] is bool(np.log(num) - estimate < 0.5)
    assert latent["mutual_information_saturated_rule"] == "log N - I < 0.5 nats"
    ceiling = f"(ceiling log N = {np.log(num):.3f}"
    report = (workdir / "report.md").read_text()
    assert f"| mutual information I(x;z) (nats) | {estimate:.3f} {ceiling}" in report
    assert "saturated means log N - I < 0.5 nats" in report
    # A saturated estimate says so, in report.md and on the screen.
    saturated = {**result, "latent": {**result["latent"], "mutual_information_nats": 8.95,
                                      "mutual_information_upper_bound_log_n": float(np.log(1e4)),
                                      "mutual_information_saturated": True}}  # fmt: skip
    assert "| 8.950 (ceiling log N = 9.210, saturated) |" in report_files.markdown(saturated)
    not_saturated = {**saturated, "latent": {**saturated["latent"], "mutual_information_nats": 3.0,
                                             "mutual_information_saturated": False}}  # fmt: skip
    assert "| 3.000 (ceiling log N = 9.210) |" in report_files.markdown(not_saturated)


@pytest.fixture(scope="module")
def evaluated_2d_run(tmp_path_factory, tiny_data_dir):
    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    config.model.latent_dim = 2
    config.training.num_epochs = 2
    workdir = tmp_path_factory.mktemp("eval") / "run"
    train_and_evaluate(config, workdir)
    result = evaluate_run(workdir, num_importance_samples=32, importance_chunk_size=8)
    return workdir, result


FIGURE_SIZES = {  # pixels at figures.DPI for the tiny config (4 figure examples)
    "reconstructions.png": (540, 580),
    "generations.png": (1200, 420),
    "interpolation.png": (1250, 200),
    "training_curves.png": (1300, 380),
    "latent_manifold.png": (700, 700),
    "latent_scatter.png": (700, 600),
}


@pytest.mark.slow
def test_figures_exist_are_pngs_of_the_expected_size_and_not_blank(evaluated_2d_run):
    workdir, result = evaluated_2d_run
    assert sorted(p.split("/")[-1] for p in result["figures"]) == sorted(FIGURE_SIZES)
    for name, size in FIGURE_SIZES.items():
        path = workdir / "figures" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as image:
            assert image.size == size, (name, image.size)
            pixels = np.asarray(image.convert("L"), np.float64)
        assert pixels.std() > 10, name  # not one flat colour
        assert len(np.unique(pixels)) > 20, name


@pytest.mark.slow
def test_report_records_the_protocol_and_re_evaluation_repeats_it(evaluated_2d_run):
    workdir, result = evaluated_2d_run
    report = json.loads((workdir / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["num_importance_samples"] == 32
    assert evaluation["data"]["protocol"]["binarization"] == "dynamic"
    assert len(evaluation["data"]["fingerprint_sha256"]["test"]) == 64
    assert evaluation["test_nll"]["nats"] > 0
    assert "bits_per_dim" in evaluation["test_nll"]
    assert -evaluation["test_elbo"]["elbo"] >= evaluation["test_nll"]["nats"] - 1e-3
    assert evaluation["latent"]["dimensions"] == 2
    assert "test NLL" in (workdir / "report.md").read_text()
    again = evaluate_run(workdir, num_importance_samples=32, importance_chunk_size=8,
                         make_figures=False)  # fmt: skip
    assert again["test_nll"] == result["test_nll"]  # the keys are recorded: same numbers
    assert again["latent"] == result["latent"]


@pytest.mark.slow
def test_evaluation_phases_are_timed_and_add_up(evaluated_2d_run):
    """report.json's timings: the bound's compile apart from its batches, then the ELBO,
    the latent diagnostics and the figures, together within the whole evaluation."""
    _, result = evaluated_2d_run
    timings = result["timings_seconds"]
    assert list(timings) == [
        "compile_test_nll_bound", "test_nll_bound", "test_elbo", "latent_diagnostics", "figures"
    ]  # fmt: skip
    assert all(t > 0 for t in timings.values())
    assert sum(timings.values()) <= result["seconds"]
    assert result["compute_dtype"] == "float32"


@pytest.mark.slow
def test_bfloat16_evaluation_is_recorded_and_close_to_float32(evaluated_2d_run, tmp_path):
    """--compute_dtype=bfloat16: the same keys, bfloat16 products, a nearby bound."""
    workdir, result = evaluated_2d_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    low = evaluate_run(copy, num_importance_samples=32, importance_chunk_size=8,
                       make_figures=False, compute_dtype="bfloat16")  # fmt: skip
    assert low["compute_dtype"] == "bfloat16"
    report = json.loads((copy / "report.json").read_text())
    assert report["evaluation"]["compute_dtype"] == "bfloat16"
    assert "| networks' products | bfloat16 |" in (copy / "report.md").read_text()
    assert low["test_nll"]["nats"] != result["test_nll"]["nats"]
    assert abs(low["test_nll"]["nats"] - result["test_nll"]["nats"]) < 0.5
    assert "figures" not in low["timings_seconds"]


@pytest.mark.slow
def test_evaluate_command_line_errors(evaluated_2d_run, tmp_path):
    """One subprocess for what only the command line shows (flag parsing, exit code, a
    one-line ``error: ...`` and no traceback); the other message is checked in-process:
    any ``UserFacingError`` takes that same path (``vae_jax.run.cli.run``)."""
    workdir, _ = evaluated_2d_run
    result = run(
        [
            sys.executable,
            "-m",
            "experiments.evaluate",
            f"--workdir={workdir}",
            "--num_importance_samples=0",
        ]
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1] == "error: --num_importance_samples=0 must be >= 1"
    )
    assert "Traceback" not in result.stderr
    with pytest.raises(UserFacingError, match="holds no run"):
        evaluate_run(tmp_path / "none")


@pytest.mark.parametrize(
    ("likelihood", "has_bits"),
    [("bernoulli", True), ("discretized_logistic", True), ("gaussian", False),
     ("continuous_bernoulli", False)],
)  # fmt: skip
def test_the_test_nll_summary_gives_bits_per_dim_over_every_pixel_and_channel(likelihood, has_bits):
    """Catches bits/dim divided by the wrong number of dimensions (height * width without
    the channels) or given for densities of continuous data: the test NLL summary of
    importance-weighted bounds on (4, 4, 3) images is ``-mean / (48 ln 2)`` bits/dim for
    the discrete likelihoods, and has no bits/dim for the others."""
    from vae_jax.evaluation.evaluate_run import _nll_summary

    iwae = np.array([-40.0, -35.5, -52.25, -47.0])
    vae = types.SimpleNamespace(likelihood=likelihood)
    dataset = types.SimpleNamespace(image_shape=(4, 4, 3))
    summary = _nll_summary(iwae, vae, dataset)
    assert summary["nats"] == pytest.approx(43.6875, rel=1e-12)
    if has_bits:
        assert summary["bits_per_dim"] == pytest.approx(43.6875 / (48 * math.log(2)), rel=1e-12)
    else:
        assert "bits_per_dim" not in summary


@pytest.mark.slow
def test_the_report_gives_the_test_nll_in_bits_per_dim_of_its_nats(evaluated_2d_run):
    """Catches a wrong bits/dim in report.json and report.md (until now only the key was
    checked): the evaluated run's (Bernoulli, 28 x 28 x 1 images) bits/dim is its NLL in
    nats over 784 ln 2, and report.md shows it to 4 decimals."""
    workdir, result = evaluated_2d_run
    nll = json.loads((workdir / "report.json").read_text())["evaluation"]["test_nll"]
    assert nll == result["test_nll"]
    assert nll["bits_per_dim"] == pytest.approx(nll["nats"] / (784 * math.log(2)), rel=1e-12)
    assert (
        f"| test NLL (bits/dim) | {nll['bits_per_dim']:.4f} |"
        in (workdir / "report.md").read_text()
    )
