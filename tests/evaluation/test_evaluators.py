"""The evaluators as plug-ins (vae_jax/evaluation/evaluators.py) and the report's schema
(vae_jax/evaluation/report_schema.py): built from keyword arguments, each returns its part
of the report; ``Evaluator`` is those parts in the schema's order; no evaluator reads the
config."""

from __future__ import annotations

import ast

import jax
import numpy as np
import pytest

from tests.helpers.repo import REPO
from vae_jax import adapter
from vae_jax.core import rng
from vae_jax.data import load_dataset
from vae_jax.evaluation import evaluators, report_schema
from vae_jax.evaluation.evaluate_run import EVALUATION_PURPOSES, Evaluator
from vae_jax.run.metrics_log import read_metrics

MEASURED_KEYS = [
    "split", "num_examples", "compute_dtype", "num_importance_samples",
    "importance_chunk_size", "keys", "test_nll", "test_elbo", "latent", "layers", "data",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_run):
    from vae_jax.run import loading

    vae, params, config = loading.load_run(tiny_run.workdir)
    dataset = load_dataset(config)
    return vae, params, config, dataset


@pytest.mark.slow
def test_each_evaluator_returns_its_part_and_evaluate_is_their_parts(trained, tmp_path):
    vae, params, config, dataset = trained
    test = dataset.test
    common = dict(vae=vae, preprocessing=dataset.preprocessing, images=test.images)
    keys = {p: rng.eval_key(rng.make_streams(config.seed).eval, p) for p in EVALUATION_PURPOSES}
    nll = evaluators.TestNLL(
        **common, image_shape=dataset.image_shape, num_importance_samples=4, chunk_size=2,
        batch_size=25,
    ).run(params, keys["test_iwae"])  # fmt: skip
    assert set(nll) == {"nats", "standard_error", "estimator", "bits_per_dim"}
    elbo, kl_per_dim = evaluators.TestELBO(**common, num_samples=1, batch_size=25).run(
        params, keys["test_elbo"]
    )
    assert kl_per_dim.shape == (test.num_examples, vae.latent_dim)
    latent, layers = evaluators.LatentDiagnostics(**common, batch_size=25).run(
        params, keys["mutual_information"], kl_per_dim=kl_per_dim
    )
    assert layers is None  # one stochastic layer
    assert latent["dimensions"] == vae.latent_dim
    evaluator = Evaluator(
        adapter.evaluation_vae_from_config(config, dataset.image_shape), dataset,
        **adapter.evaluator_options(config), num_importance_samples=4, chunk_size=2,
        batch_size=25,
    )  # fmt: skip
    result = evaluator.evaluate(params, config.seed)
    assert list(result) == MEASURED_KEYS
    assert result["test_nll"] == nll
    assert result["test_elbo"] == elbo
    assert result["latent"] == latent
    assert list(result["keys"]["purpose_ids"]) == list(EVALUATION_PURPOSES)
    assert set(evaluator.timings) == {
        "compile_test_nll_bound", "test_nll_bound", "test_elbo", "latent_diagnostics",
    }  # fmt: skip


@pytest.mark.slow
def test_figures_take_their_records_and_folder(trained, tiny_run, tmp_path):
    vae, params, _, dataset = trained
    plots = evaluators.Figures(
        vae=vae, preprocessing=dataset.preprocessing, images=dataset.test.images,
        labels=dataset.test.labels, num_examples=3, num_bins=256, batch_size=25,
    )  # fmt: skip
    paths = plots.run(
        params, jax.random.key(0), records=read_metrics(tiny_run.workdir), folder=tmp_path
    )
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == [
        "generations.png", "interpolation.png", "reconstructions.png", "training_curves.png",
    ]  # fmt: skip


def test_the_schema_orders_every_part_of_the_section():
    measured = report_schema.measured_part(
        num_examples=3, compute_dtype="float32", num_importance_samples=5,
        importance_chunk_size=5, seed=2, purposes=EVALUATION_PURPOSES, test_nll={},
        test_elbo={}, latent={}, layers=None, data={},
    )  # fmt: skip
    assert list(measured) == MEASURED_KEYS
    assert measured["keys"]["derivation"] == report_schema.KEY_DERIVATION
    closing = report_schema.closing_part(figures=None, seconds=1.0, timings={"a": 2.0})
    assert list(closing) == ["seconds", "timings_seconds"]
    closing = report_schema.closing_part(figures=["f.png"], seconds=1.0, timings={})
    assert list(closing) == ["figures", "seconds", "timings_seconds"]
    assert report_schema.checkpoint_part(step=7, epoch=1) == {"checkpoint": {"step": 7, "epoch": 1}}


def test_nll_section_gives_bits_per_dimension_by_the_formula():
    iwae = np.array([-500.0, -510.0])
    section = report_schema.nll_section(iwae, likelihood="bernoulli", image_shape=(28, 28, 1))
    assert section["nats"] == pytest.approx(505.0)
    assert section["bits_per_dim"] == pytest.approx(505.0 / (784 * np.log(2)))
    gaussian = report_schema.nll_section(iwae, likelihood="gaussian", image_shape=(28, 28, 1))
    assert "bits_per_dim" not in gaussian


def test_no_evaluator_reads_the_config():
    """The plug-ins and the schema take keyword arguments: the name ``config`` appears
    nowhere in them (``Evaluator`` in evaluate_run.py builds them from it)."""
    for name in ("evaluators.py", "report_schema.py"):
        tree = ast.parse((REPO / "vae_jax" / "evaluation" / name).read_text())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not {n for n in names if "config" in n}, name
