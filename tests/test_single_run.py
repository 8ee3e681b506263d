"""``vae_jax/single_run.py``: ``train_and_evaluate`` end to end: the tiny config learns and
writes its files, the step and the epoch compile once, the same seed in two processes gives
the same bits, an invalid config fails before any work, a non-finite loss stops naming
epoch, step and metric."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vae_jax
from tests.helpers.repo import REPO
from tests.helpers.runs import (
    apply_overrides,
    assert_same_metrics,
    assert_same_params,
    checkpoint_steps,
    counting_compilations,
    final_params,
    read_tensorboard_scalars,
    run,
    train_command,
)
from vae_jax import objectives
from vae_jax.core import rng
from vae_jax.errors import ConfigError, NonFiniteError
from vae_jax.run import loading
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate
from vae_jax.train_state import create_train_state
from vae_jax.training import step
from vae_jax.training.trainer import trainer_from_config


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, tiny_data_dir) -> Path:
    """A run of the tiny config in its own process."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    result = run(train_command(workdir, tiny_data_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_tiny_trains_end_to_end_and_writes_its_files(tiny_config, tmp_path):
    tiny_config.training.num_epochs = 4
    workdir = tmp_path / "run"
    report = train_and_evaluate(tiny_config, workdir)
    records = read_metrics(workdir)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["validation/elbo"] > records[0]["validation/elbo"] + 5
    assert records[-1]["train/elbo"] > records[0]["train/elbo"] + 5
    for key in (
        "train/log_likelihood",
        "train/kl",
        "train/grad_norm",
        "train/param_norm",
        "time/epoch_seconds",
        "time/examples_per_second",
        "validation/kl",
    ):
        assert np.isfinite(records[-1][key]), key
    assert report["status"] == "complete"
    assert json.loads((workdir / "report.json").read_text())["final"] == records[-1]
    manifest = json.loads((workdir / "manifest.json").read_text())
    assert manifest["seed"] == 0
    assert manifest["key_impl"] == "threefry2x32"
    assert manifest["key_streams"]["stream_ids"]["latent"] == 3
    assert manifest["environment"]["packages"]["jax"] == jax.__version__
    assert manifest["environment"]["backend"] == "cpu"
    assert set(manifest["data"]["fingerprint_sha256"]) == {"train", "test"}
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    assert manifest["git"]["commit"] == (head or None)  # None outside a git checkout
    assert manifest["git"]["dirty"] in ((True, False) if head else (None,))
    assert json.loads((workdir / "config.json").read_text())["model"]["latent_dim"] == 4
    # TensorBoard events hold the same numbers as metrics.jsonl.
    scalars = read_tensorboard_scalars(workdir / "tensorboard")
    assert [step for step, _ in scalars["validation/elbo"]] == [r["step"] for r in records]
    np.testing.assert_allclose(
        [v for _, v in scalars["validation/elbo"]],
        [r["validation/elbo"] for r in records],
        rtol=1e-6,
    )
    vae, params, config = vae_jax.load_run(workdir)
    assert config.model.latent_dim == 4
    assert vae.encode(params, jnp.zeros((1, 28, 28, 1))).loc.shape == (1, 4)


@pytest.mark.slow
def test_step_and_epoch_compile_once(tiny_run, tiny_config):
    # The session's tiny run (3 epochs) counted XLA's compilations while it trained.
    assert tiny_run.epochs == 3
    assert tiny_run.compilations["train_epoch"] == 1
    # The stand-alone jitted step too: one compilation for many batches and steps.
    trainer = trainer_from_config(tiny_config, (28, 28, 1), None, 540)
    train_step = jax.jit(trainer.train_step, donate_argnums=0)
    state = create_train_state(trainer.vae, trainer.optimizer, jax.random.key(0))
    streams = rng.make_streams(0)
    with counting_compilations() as compiled:
        for i in range(4):
            x = jax.random.bernoulli(jax.random.key(i), 0.3, (50, 28, 28, 1)).astype(jnp.float32)
            batch = step.Batch(x, jnp.ones((50,), bool))
            state, _metrics = train_step(state, batch, rng.step_key(streams.latent, i))
    assert compiled["train_step"] == 1
    assert int(state.step) == 4


@pytest.mark.slow
def test_same_seed_two_processes_identical_different_seed_differs(
    reference_run, tiny_run, tiny_config, tmp_path
):
    # reference_run ran in a subprocess; tiny_run in a test process, in-process.
    workdir = tiny_run.workdir
    assert_same_params(final_params(workdir), final_params(reference_run))
    assert_same_metrics(workdir, reference_run)
    tiny_config.seed = 1
    other = tmp_path / "other_seed"
    tiny_config.training.num_epochs = 2
    train_and_evaluate(tiny_config, other)
    a, b = final_params(other), final_params(reference_run)
    assert not np.array_equal(a["decoder"]["pixels"]["kernel"], b["decoder"]["pixels"]["kernel"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("optimizer.learning_rate", -1e-3, r"optimizer.learning_rate=-0.001 must be > 0"),
        ("model.latent_dim", 0, r"model.latent_dim=0 must be >= 1"),
        ("data.name", "no_such_data", r"data.name='no_such_data' is neither a known dataset"),
        ("model.likelihood", "poisson", r"model.likelihood='poisson' is not one of"),
        ("training.batch_size", 5000, r"training.batch_size=5000 is larger than the 540"),
        ("model.likelihood", "gaussian", r"model.likelihood='gaussian' is for intensity data"),
        ("objective.kl", "exact", r"objective.kl='exact' is not one of"),
    ],
)
def test_invalid_config_fails_naming_the_field_before_any_work(
    tiny_config, tmp_path, field, value, message
):
    apply_overrides(tiny_config, {field: value})
    workdir = tmp_path / "never_created"
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate(tiny_config, workdir)
    assert not workdir.exists()


@pytest.mark.slow
def test_invalid_config_on_the_command_line_is_one_line_and_exit_1(tiny_data_dir, tmp_path):
    workdir = tmp_path / "never_created"
    result = run(train_command(workdir, tiny_data_dir, "--config.optimizer.learning_rate=-0.1"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: optimizer.learning_rate=-0.1 must be > 0.0"
    )
    assert "Traceback" not in result.stderr
    assert not workdir.exists()


@pytest.mark.slow
def test_non_finite_loss_stops_with_epoch_step_and_metric(tiny_config, tmp_path, monkeypatch):
    make_objective = objectives.make_objective

    def objective_that_diverges(vae, **objective_fields):
        loss_fn = make_objective(vae, **objective_fields)

        def diverging(params, key, x, mask, step):
            loss, metrics = loss_fn(params, key, x, mask, step)
            bad = jnp.where(step >= 25, jnp.nan, 0.0)  # step 26 is the 4th of epoch 3
            return loss + bad, {**metrics, "loss": metrics["loss"] + bad}

        return diverging

    monkeypatch.setattr(objectives, "make_objective", objective_that_diverges)
    tiny_config.training.num_epochs = 5
    workdir = tmp_path / "run"
    with pytest.raises(NonFiniteError, match=r"non-finite train/loss=nan at epoch 3, step 26"):
        train_and_evaluate(tiny_config, workdir)
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2]
    assert checkpoint_steps(workdir) == [11, 22]
    _, state, record, _ = loading.load_state(workdir)
    assert record["epoch"] == 2
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))
