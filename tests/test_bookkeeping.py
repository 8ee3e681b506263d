"""The bookkeeping promises, each checked against a second way of computing the number.

Masked means (the padded end of the last batch counts nowhere), epoch summaries (per-example
means weighted by unmasked examples, learning rate and beta at the epoch's last step),
checkpoint schedule and retention, every config range at and just past its edges, which
fields a resume may change, ``reproduce`` comparing the optimizer state, and data
fingerprints that cover every example.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import math
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import synthetic_images, write_idx_folder
from run_helpers import apply_overrides, checkpoint_steps

import vae_jax
from experiments.configs import tiny
from vae_jax import config_checks
from vae_jax.data import Preprocessing, idx, ingest, load_dataset, source
from vae_jax.errors import ConfigError
from vae_jax.reproduce import first_differing_metric, reproduce
from vae_jax.run import checkpointing
from vae_jax.run.loading import load_state
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate
from vae_jax.sweep.runner import run_sweep
from vae_jax.training import resume

# --- Internals this file needs, in one place (an upcoming restructure renames them). ---


def make_objective(vae, objective_config):
    from vae_jax import objectives

    return objectives.make_objective(vae, **objective_config)


def summarize_epoch(step_metrics):
    from vae_jax.training import summaries

    return summaries.summarize_epoch(step_metrics)


def evaluate_every_example(per_example_fn, params, key, images, batch_size):
    """Runs ``per_example_fn(params, key_i, x_i)`` over stored {0, 1} uint8 ``images``."""
    from vae_jax.evaluation import per_example

    preprocessing = Preprocessing(kind="binary", binarization="static")
    evaluate_batch = per_example.make_batch_evaluator(per_example_fn, preprocessing)
    return per_example.evaluate_examples(evaluate_batch, params, key, images, batch_size)


def first_non_finite(step_metrics):
    from vae_jax.training import summaries

    return summaries.first_non_finite(step_metrics)


def one_train_step(config, params, x, mask, key):
    """The project's train step from ``config``, once from ``params``: the new parameters
    and the step's metrics."""
    from vae_jax.training import step as step_lib
    from vae_jax.training.trainer import trainer_from_config

    trainer = trainer_from_config(config, (28, 28, 1), None, NUM_TRAIN)
    state = step_lib.TrainState(jnp.int32(0), params, trainer.optimizer.init(params))
    state, metrics = jax.jit(trainer.train_step)(state, step_lib.Batch(x, mask), key)
    return state.params, metrics


# --- Shared settings and helpers. ---

# tiny: 600 source train examples, the last 10% carved for validation, batches of 50.
NUM_TRAIN = 600 - round(0.1 * 600)
STEPS_PER_EPOCH = math.ceil(NUM_TRAIN / 50)
NUM_EPOCHS = 5
# A schedule and a KL warm-up that change within every epoch, so that a value taken from the
# wrong step of an epoch shows.
SCHEDULED = {
    "training.num_epochs": NUM_EPOCHS,
    "optimizer.schedule": "warmup_cosine",
    "optimizer.warmup_steps": 7,
    "optimizer.final_learning_rate_ratio": 0.1,
    "objective.beta": 0.5,
    "objective.kl_warmup_steps": 15,
}


def get_field(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def tiny_with(data_dir: str | None = None, **overrides):
    config = tiny.get_config()
    if data_dir is not None:
        config.data.data_dir = data_dir
    return apply_overrides(config, overrides)


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def nudged(value: float, dtype) -> float:
    """The next ``dtype`` number above ``value``: the smallest change a bit-for-bit check
    must see."""
    return float(np.nextafter(dtype(value), dtype(np.inf)))


# --- Masked means: padding counts in no loss, metric or gradient. ---

NUM_VALID, NUM_PADDED = 5, 3


@pytest.fixture(scope="module")
def tiny_model():
    """The tiny VAE, its initial parameters and its ELBO compiled once for this file."""
    vae = vae_jax.vae_from_config(tiny.get_config(), (28, 28, 1))
    params = jax.jit(vae.init)(jax.random.key(0))
    elbo = jax.jit(vae.elbo, static_argnames=("num_samples", "kl"))
    return vae, params, elbo


def _padded_batch(padding_probability: float):
    valid = jax.random.bernoulli(jax.random.key(1), 0.3, (NUM_VALID, 28, 28, 1))
    padding = jax.random.bernoulli(jax.random.key(9), padding_probability, (NUM_PADDED, 28, 28, 1))
    x = jnp.concatenate([valid, padding]).astype(jnp.float32)
    mask = jnp.arange(NUM_VALID + NUM_PADDED) < NUM_VALID
    return x, mask


def _valid_mean(values) -> float:
    return float(np.mean(np.asarray(values, np.float64)[:NUM_VALID]))


def _loss_and_metrics(vae, params, objective_config, key, step):
    """The objective's loss and metrics on a padded batch, after checking that replacing the
    padded images leaves the loss, every metric and the gradient as they were."""
    objective_fn = jax.jit(jax.value_and_grad(make_objective(vae, objective_config), has_aux=True))
    results = []
    for padding_probability in (0.95, 0.02):
        x, mask = _padded_batch(padding_probability)
        (loss, metrics), grads = objective_fn(params, key, x, mask, jnp.int32(step))
        results.append((float(loss), {k: float(v) for k, v in metrics.items()}, grads))
    (loss, metrics, grads), (loss_other, metrics_other, grads_other) = results
    np.testing.assert_allclose(loss_other, loss, rtol=1e-6)
    for name in metrics:
        np.testing.assert_allclose(metrics_other[name], metrics[name], rtol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_other), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    return loss, metrics


@pytest.mark.slow
def test_elbo_objective_averages_over_unmasked_examples_only(tiny_model):
    """objective.py: "The loss is averaged over the examples where mask is True"; beta is
    beta * min(1, (t + 1) / kl_warmup_steps). Padded images change nothing."""
    vae, params, elbo = tiny_model
    config = tiny_with(
        **{"objective.num_samples": 2, "objective.beta": 0.5, "objective.kl_warmup_steps": 10}
    )
    key, step = jax.random.key(2), 4
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, step)
    x, _ = _padded_batch(0.95)
    out = elbo(params, key, x, num_samples=2)  # the objective's draws
    beta = 0.5 * min(1.0, (step + 1) / 10)
    log_likelihood, kl = _valid_mean(out.log_likelihood), _valid_mean(out.kl)
    expected = {
        "loss": -(log_likelihood - beta * kl),
        "elbo": _valid_mean(out.elbo),
        "log_likelihood": log_likelihood,
        "kl": kl,
        "beta": beta,
    }
    assert set(metrics) == set(expected)
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-5)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)
    # The padded examples would have moved the means: the check above can tell.
    assert abs(float(np.mean(out.kl)) - kl) > 1e-3 * abs(kl)


@pytest.mark.slow
@pytest.mark.parametrize("num_valid", [1, 0], ids=["one_example", "all_padding"])
def test_a_batch_of_one_example_or_none_is_averaged_over_what_it_holds(tiny_model, num_valid):
    """A last batch may hold a single example: the loss is that example's; a batch of padding
    only contributes a loss of 0, not NaN."""
    vae, params, elbo = tiny_model
    key = jax.random.key(2)
    x, _ = _padded_batch(0.95)
    mask = jnp.arange(len(x)) < num_valid
    objective_fn = jax.jit(make_objective(vae, tiny_with().objective))
    loss, metrics = objective_fn(params, key, x, mask, jnp.int32(0))
    expected = -float(elbo(params, key, x).elbo[0]) if num_valid else 0.0
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["elbo"]), -expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_monte_carlo_kl_without_free_bits_is_not_clamped(tiny_model):
    """With kl="mc" a dimension's KL estimate can be negative; free_bits = 0 (off) must leave
    it as it is, so the loss is exactly -(log-likelihood - KL), both averaged over examples."""
    vae, params, elbo = tiny_model
    key = jax.random.key(2)
    config = tiny_with(**{"objective.kl": "mc"})
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, 0)
    x, _ = _padded_batch(0.95)
    out = elbo(params, key, x, kl="mc")
    kl_per_dim = np.asarray(out.kl_per_dim, np.float64)[:NUM_VALID].mean(0)
    assert np.any(kl_per_dim < -1e-3)  # a clamp at 0 would change the loss
    expected = -(_valid_mean(out.log_likelihood) - _valid_mean(out.kl))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], _valid_mean(out.kl), rtol=1e-5)


def test_free_bits_average_each_dimension_over_unmasked_examples_only(tiny_model):
    """Free bits: each latent dimension's KL, averaged over the unmasked examples, is only
    penalized above ``free_bits`` nats."""
    vae, params, elbo = tiny_model
    key = jax.random.key(2)
    x, _ = _padded_batch(0.95)
    out = elbo(params, key, x)
    kl_per_dim = np.asarray(out.kl_per_dim, np.float64)[:NUM_VALID].mean(0)
    # A threshold between the two smallest dimensions: one is clamped, the others are not.
    low, second = np.sort(kl_per_dim)[:2]
    assert second > low * 1.01
    free_bits = float((low + second) / 2)
    config = tiny_with(**{"objective.free_bits": free_bits})
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, 0)
    penalty = np.maximum(kl_per_dim, free_bits).sum()
    np.testing.assert_allclose(loss, -(_valid_mean(out.log_likelihood) - penalty), rtol=1e-5)
    np.testing.assert_allclose(metrics["kl"], _valid_mean(out.kl), rtol=1e-5)
    # Averaged over every row, padding included, the penalty would differ.
    with_padding = np.maximum(np.asarray(out.kl_per_dim, np.float64).mean(0), free_bits).sum()
    assert abs(with_padding - penalty) > 1e-3 * penalty


@pytest.mark.slow
def test_iwae_objective_and_metrics_average_over_unmasked_examples_only(tiny_model):
    """IWAE-k: the loss is minus the bound averaged over unmasked examples; the reported ELBO
    terms are the log-likelihood of the same K draws and the analytic KL, and the ELBO is
    their difference (as the elbo objective reports them with K draws)."""
    vae, params, elbo = tiny_model
    num_samples = 4
    config = tiny_with(**{"objective.name": "iwae", "objective.num_samples": num_samples})
    key = jax.random.key(2)
    loss, metrics = _loss_and_metrics(vae, params, config.objective, key, 0)
    x, _ = _padded_batch(0.95)
    bound = jax.jit(vae.iwae_bound, static_argnums=3)(params, key, x, num_samples)
    same_draws = elbo(params, key, x, num_samples=num_samples)  # analytic KL
    expected = {
        "loss": -_valid_mean(bound),
        "iwae_bound": _valid_mean(bound),
        "elbo": _valid_mean(same_draws.elbo),
        "log_likelihood": _valid_mean(same_draws.log_likelihood),
        "kl": _valid_mean(same_draws.kl),
        "beta": 1.0,
    }
    assert set(metrics) == set(expected)
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-5)
    for name, value in expected.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-5, err_msg=name)


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


@pytest.mark.slow
def test_every_example_is_evaluated_exactly_once_with_its_own_key(tiny_model):
    """per_example.py: one result per example, with key fold_in(key, i), whatever the
    batch size and however the last batch is padded."""
    vae, params, elbo = tiny_model
    key = jax.random.key(5)
    images = np.asarray(jax.random.bernoulli(jax.random.key(3), 0.3, (7, 28, 28, 1)), np.uint8)
    alone = [
        elbo(params, jax.random.fold_in(key, i), images[i].astype(np.float32)) for i in range(7)
    ]
    for batch_size in (3, 10):  # 3 batches, the last with 1 example; 1 batch larger than all
        out = evaluate_every_example(
            lambda p, k, x: vae.elbo(p, k, x), params, key, jnp.asarray(images), batch_size
        )
        assert out.elbo.shape == (7,)
        assert out.kl_per_dim.shape == (7, 4)
        for name in ("elbo", "log_likelihood", "kl", "kl_per_dim"):
            np.testing.assert_allclose(
                getattr(out, name),
                np.stack([getattr(a, name) for a in alone]),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name}, batch size {batch_size}",
            )


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


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer",
    [
        {"optimizer.name": "adam"},
        {"optimizer.name": "adamw", "optimizer.weight_decay": 0.5},
        {"optimizer.name": "adamw", "optimizer.weight_decay": 0.5, "optimizer.grad_clip_norm": 0.1},
    ],
    ids=["adam", "adamw", "adamw_clipped"],
)
def test_a_train_step_is_the_optax_update_of_the_objectives_gradient(tiny_model, optimizer):
    """One step: the gradient of the objective's loss, then optax's own Adam/AdamW (after
    global-norm clipping when set), as base.py documents each field; metrics report that
    gradient's norm and the schedule at the step taken."""
    vae, params, _ = tiny_model
    config = tiny_with(**optimizer)
    x, mask = _padded_batch(0.95)
    key = jax.random.key(4)
    new_params, metrics = one_train_step(config, params, x, mask, key)
    loss_fn = make_objective(vae, config.objective)
    grads = jax.jit(jax.grad(lambda p: loss_fn(p, key, x, mask, jnp.int32(0))[0]))(params)
    o = config.optimizer
    if o.name == "adam":
        reference = optax.adam(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
    else:
        reference = optax.adamw(
            o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay
        )
    if o.grad_clip_norm > 0:
        reference = optax.chain(optax.clip_by_global_norm(o.grad_clip_norm), reference)
    expected = jax.jit(
        lambda g, p: optax.apply_updates(p, reference.update(g, reference.init(p), p)[0])
    )(grads, params)
    for got, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(metrics["grad_norm"], optax.global_norm(grads), rtol=1e-5)
    assert float(metrics["learning_rate"]) == np.float32(o.learning_rate)
    assert float(metrics["num_examples"]) == NUM_VALID
    # Weight decay moves every parameter by lr * decay * value: far beyond the tolerance.
    if o.name == "adamw":
        adam = optax.adam(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps)
        without_decay = optax.apply_updates(params, adam.update(grads, adam.init(params))[0])
        kernel = lambda tree: np.asarray(tree["encoder"]["mlp"]["dense_0"]["kernel"])
        assert np.max(np.abs(kernel(without_decay) - kernel(new_params))) > 1e-5


# --- One training run shared by the checkpoint, metrics, resume and reproduce tests. ---

STOP_AFTER = 3  # not a multiple of checkpoint_every_epochs
RUN_SETTINGS = {
    **SCHEDULED,
    "training.checkpoint_every_epochs": 2,
    "training.keep_checkpoints": 3,
}


class Run(NamedTuple):
    workdir: Path  # the finished run
    stopped: Path  # a copy of it as it was when stopped after epoch STOP_AFTER
    steps_when_stopped: list[int]
    stopped_result: dict  # what train_and_evaluate returned when it stopped


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_data_dir) -> Run:
    """5 epochs, checkpoints every 2 epochs, 3 kept: stopped after epoch 3, then resumed
    with the same command (saved: epochs 2, 3, 4, 5)."""
    root = tmp_path_factory.mktemp("run")
    config = tiny_with(tiny_data_dir, **RUN_SETTINGS)
    workdir = root / "run"
    stopped_result = train_and_evaluate(config, workdir, stop_after_epoch=STOP_AFTER)
    stopped = root / "stopped"
    shutil.copytree(workdir, stopped)
    steps_when_stopped = checkpoint_steps(workdir)
    train_and_evaluate(config, workdir)
    return Run(workdir, stopped, steps_when_stopped, stopped_result)


@pytest.mark.slow
def test_checkpoints_every_n_epochs_and_when_stopped(run):
    """README: checkpoints every ``checkpoint_every_epochs`` epochs; a run stopped early
    ends with a checkpoint. Each is numbered by its global step, epoch * steps per epoch."""
    assert STEPS_PER_EPOCH == 11
    # Epoch 1 is not due, epoch 2 is, epoch 3 is saved because the run stopped there.
    assert run.steps_when_stopped == [2 * 11, 3 * 11]
    assert read_metrics(run.stopped)[-1]["step"] == 3 * 11
    assert run.stopped_result == {"status": "stopped", "epochs_completed": STOP_AFTER}


@pytest.mark.slow
def test_only_the_newest_keep_checkpoints_are_kept(run):
    """README: "the newest keep_checkpoints are kept" (saved: epochs 2, 3, 4, 5; keep 3),
    and the last epoch is always saved."""
    assert checkpoint_steps(run.workdir) == [3 * 11, 4 * 11, 5 * 11]


@pytest.mark.slow
def test_a_sweep_saves_the_last_epoch_even_when_it_is_not_due(tiny_data_dir, tmp_path):
    """README: checkpoints "at the end": in a sweep nothing but the schedule saves it."""
    config = tiny_with(
        tiny_data_dir, **{"training.num_epochs": 1, "training.checkpoint_every_epochs": 2}
    )
    run_sweep(config, tmp_path / "sweep", [0], strategy="auto", evaluate=False)
    assert checkpoint_steps(tmp_path / "sweep" / "seed_0") == [STEPS_PER_EPOCH]
    # `auto` is the fixed rule end to end: map on this CPU, recorded with the request.
    recorded = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert (recorded["strategy_requested"], recorded["strategy"]) == ("auto", "map")


@pytest.mark.slow
def test_epoch_records_take_learning_rate_and_beta_at_the_last_step(run):
    """Each record is written at its epoch's last step: ``step`` = epoch * steps/epoch, the
    learning rate is the optax schedule and beta the KL warm-up at step ``step - 1``, and
    ``train/num_examples`` counts the unmasked examples only."""
    records = read_metrics(run.workdir)
    assert [r["epoch"] for r in records] == list(range(1, NUM_EPOCHS + 1))
    # optax's own schedule, from the config's fields (optimizer.py: decay over every step).
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=1e-3,
        warmup_steps=7,
        decay_steps=NUM_EPOCHS * STEPS_PER_EPOCH,
        end_value=1e-3 * 0.1,
    )

    def beta(t):
        return 0.5 * min(1.0, (t + 1) / 15)

    for record in records:
        epoch = record["epoch"]
        assert record["step"] == epoch * STEPS_PER_EPOCH
        last, first = record["step"] - 1, (epoch - 1) * STEPS_PER_EPOCH
        np.testing.assert_allclose(record["train/learning_rate"], schedule(last), rtol=1e-6)
        assert abs(float(schedule(first)) - record["train/learning_rate"]) > 1e-6
        np.testing.assert_allclose(record["train/beta"], beta(last), rtol=1e-6)
        assert record["train/num_examples"] == NUM_TRAIN
    # Beta warms up over steps 0..14: epoch 1 ends at 11/15 of it, epoch 2 at all of it
    # (its first step, 11, is still at 12/15).
    assert records[0]["train/beta"] == pytest.approx(0.5 * 11 / 15, rel=1e-6)
    assert records[1]["train/beta"] == 0.5
    assert beta(STEPS_PER_EPOCH) == pytest.approx(0.5 * 12 / 15)


# --- Config ranges: every check at its edges and just past them. ---


def _float_at_least(field, minimum, *, strict=False):
    """``> minimum`` if strict, else ``>= minimum``; finite in float32 either way (training
    computes in float32: float64's largest number is inf there, its smallest is 0)."""
    inside = float(np.nextafter(np.float32(minimum), np.float32(np.inf)))
    # Just below in float32: float64's neighbour of 0 would be refused as an underflow
    # before the range check is reached.
    outside = float(np.nextafter(np.float32(minimum), np.float32(-np.inf)))
    rows = [
        (field, field, float(minimum), not strict),
        (field, field, inside if strict else outside, strict),
        (field, field, float(np.finfo(np.float32).max), True),
        (field, field, float(np.finfo(np.float64).max), False),
        (field, field, math.inf, False),
        (field, field, math.nan, False),
    ]
    if strict and minimum == 0:
        rows.append((field, field, float(np.nextafter(0.0, 1.0)), False))  # 0 in float32
    return rows


def _int_at_least(field, minimum):
    return [(field, field, minimum, True), (field, field, minimum - 1, False)]


def _unit_interval(field, *, include_one):
    """[0, 1] or [0, 1)."""
    rows = [
        (field, field, 0.0, True),
        (field, field, float(np.nextafter(0.0, -1.0)), False),
        (field, field, 1.0, include_one),
        (field, field, math.nan, False),
    ]
    if include_one:
        rows.append((field, field, float(np.nextafter(1.0, 2.0)), False))
    else:
        rows.append((field, field, float(np.nextafter(1.0, 0.0)), True))
    return rows


# (field named in the error, config leaf, value, accepted, other fields set first)
CONV = {"model.architecture": "conv"}
GAUSSIAN = {"model.likelihood": "gaussian"}
IWAE = {"objective.name": "iwae"}
MC = {"objective.kl": "mc"}
RANGE_ROWS = [
    ("seed", "seed", 0, True),
    ("seed", "seed", -1, False),
    ("seed", "seed", 2**32 - 1, True),
    ("seed", "seed", 2**32, False),
    ("seed", "seed", True, False),
    *_unit_interval("data.validation_fraction", include_one=False),
    *_int_at_least("data.limit_train", 0),
    *_int_at_least("data.limit_test", 0),
    *_int_at_least("data.binarization_seed", 0),
    *_int_at_least("data.split_seed", 0),
    # jax.random.key takes 32 bits: key(2**32) would silently be key(0).
    ("data.binarization_seed", "data.binarization_seed", 2**32 - 1, True),
    ("data.binarization_seed", "data.binarization_seed", 2**32, False),
    ("data.split_seed", "data.split_seed", 2**32 - 1, True),
    ("data.split_seed", "data.split_seed", 2**32, False),
    # Dynamic binarization's protocol versions: the integers 1 and 2, nothing else.
    ("data.binarization_version", "data.binarization_version", 1, True),
    ("data.binarization_version", "data.binarization_version", 2, True),
    ("data.binarization_version", "data.binarization_version", 0, False),
    ("data.binarization_version", "data.binarization_version", 3, False),
    ("data.binarization_version", "data.binarization_version", True, False),
    *_int_at_least("model.latent_dim", 1),
    ("model.hidden_sizes[0]", "model.hidden_sizes", (1,), True),
    ("model.hidden_sizes[0]", "model.hidden_sizes", (0,), False),
    ("model.hidden_sizes[1]", "model.hidden_sizes", (32, 1), True),
    ("model.hidden_sizes[1]", "model.hidden_sizes", (32, 0), False),
    ("model.conv_channels[0]", "model.conv_channels", (1,), True, CONV),
    ("model.conv_channels[0]", "model.conv_channels", (0,), False, CONV),
    ("model.conv_channels[1]", "model.conv_channels", (32, 0), False, CONV),
    ("model.conv_channels", "model.conv_channels", (), False, CONV),
    *_float_at_least("model.observation_scale", 0.0, strict=True),
    *_float_at_least("model.min_scale", 0.0, strict=True),
    # A learned gaussian scale's lower bound must be below its initial value.
    ("model.min_scale", "model.min_scale", 0.1, False, GAUSSIAN),
    ("model.min_scale", "model.min_scale", float(np.nextafter(0.1, 0.0)), True, GAUSSIAN),
    *_int_at_least("model.num_bins", 2),
    # a probability clamp: [0, 0.5)
    ("model.bernoulli_clip", "model.bernoulli_clip", 0.0, True),
    ("model.bernoulli_clip", "model.bernoulli_clip", -1e-9, False),
    ("model.bernoulli_clip", "model.bernoulli_clip", 0.49, True),
    ("model.bernoulli_clip", "model.bernoulli_clip", 0.5, False),
    ("model.log_variance_range", "model.log_variance_range", (), True),
    ("model.log_variance_range", "model.log_variance_range", (-6.0, 2.0), True),
    ("model.log_variance_range", "model.log_variance_range", (2.0, -6.0), False),
    ("model.log_variance_range", "model.log_variance_range", (1.0, 1.0), False),
    ("model.log_variance_range", "model.log_variance_range", (-6.0,), False),
    *_int_at_least("model.prior_components", 1),
    *_int_at_least("model.flow_steps", 1),
    *_int_at_least("model.flow_hidden_size", 1),
    ("model.upper_latent_dims[0]", "model.upper_latent_dims", (1,), True, MC),
    ("model.upper_latent_dims[0]", "model.upper_latent_dims", (0,), False, MC),
    ("model.upper_latent_dims[1]", "model.upper_latent_dims", (4, 0), False, MC),
    ("model.upper_hidden_sizes[0]", "model.upper_hidden_sizes", (1,), True),
    ("model.upper_hidden_sizes[0]", "model.upper_hidden_sizes", (0,), False),
    ("model.upper_hidden_sizes[1]", "model.upper_hidden_sizes", (8, 0), False),
    ("model.upper_hidden_sizes", "model.upper_hidden_sizes", (), False),
    *_int_at_least("objective.num_samples", 1),
    *_float_at_least("objective.beta", 0.0),
    *_int_at_least("objective.kl_warmup_steps", 0),
    *_int_at_least("objective.kl_warmup_epochs", 0),
    *_float_at_least("objective.free_bits", 0.0),
    # The elbo-only fields must stay neutral under iwae.
    ("objective.beta", "objective.beta", 1.0, True, IWAE),
    ("objective.beta", "objective.beta", float(np.nextafter(1.0, 2.0)), False, IWAE),
    ("objective.beta", "objective.beta", float(np.nextafter(1.0, 0.0)), False, IWAE),
    ("objective.kl_warmup_steps", "objective.kl_warmup_steps", 1, False, IWAE),
    ("objective.kl_warmup_epochs", "objective.kl_warmup_epochs", 1, False, IWAE),
    ("objective.free_bits", "objective.free_bits", float(np.nextafter(0.0, 1.0)), False, IWAE),
    *_float_at_least("optimizer.learning_rate", 0.0, strict=True),
    *_int_at_least("optimizer.warmup_steps", 0),
    *_unit_interval("optimizer.final_learning_rate_ratio", include_one=True),
    *_float_at_least("optimizer.weight_decay", 0.0),
    *_unit_interval("optimizer.b1", include_one=False),
    *_unit_interval("optimizer.b2", include_one=False),
    *_float_at_least("optimizer.eps", 0.0, strict=True),
    *_float_at_least("optimizer.grad_clip_norm", 0.0),
    *(
        row
        for field in (
            "batch_size",
            "num_epochs",
            "checkpoint_every_epochs",
            "keep_checkpoints",
            "eval_batch_size",
            "validation_num_samples",
        )
        for row in _int_at_least(f"training.{field}", 1)
    ),
    *_int_at_least("training.early_stopping_patience", 0),
    # early stopping reads the validation split
    (
        "training.early_stopping_patience",
        "data.validation_fraction",
        0.0,
        False,
        {"training.early_stopping_patience": 3},
    ),
    *(
        row
        for field in (
            "num_importance_samples",
            "importance_chunk_size",
            "batch_size",
            "num_elbo_samples",
            "num_figure_examples",
        )
        for row in _int_at_least(f"evaluation.{field}", 1)
    ),
    *_int_at_least("runtime.num_devices", 0),
    *(
        row
        for field in (
            "ais_num_steps",
            "ais_num_chains",
            "ais_leapfrog_steps",
            "ais_chain_chunk_size",
            "bdmc_num_examples",
        )
        for row in _int_at_least(f"evaluation.{field}", 1)
    ),
    *_int_at_least("evaluation.ais_num_examples", 0),
    # an open interval: (0, 1)
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 0.0, False),
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 0.01, True),
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 0.99, True),
    ("evaluation.ais_target_acceptance", "evaluation.ais_target_acceptance", 1.0, False),
]
# Seeds of keys the data draws from: 32 bits, like the run's seed.
# Every documented choice (experiments/configs/base.py) of the string fields check_config checks.
CHOICES = {
    "data.source": ("local", "tfds"),
    "data.binarization": ("none", "static", "dynamic"),
    "data.static_binarization": ("sample", "threshold"),
    "model.architecture": ("mlp", "conv", "gated_conv"),
    "model.activation": (
        "relu",
        "gelu",
        "elu",
        "silu",
        "tanh",
        "softplus",
        "leaky_relu",
        "gated",
    ),
    "model.kernel_init": ("lecun_normal", "he_normal"),
    "model.decoder_reads": ("z1", "all_layers"),
    "model.pseudo_inputs": ("sigmoid", "hardtanh"),
    "data.validation_order": ("permuted", "last"),
    "model.likelihood": ("bernoulli", "continuous_bernoulli", "gaussian", "discretized_logistic"),
    "model.gaussian_scale": ("fixed", "shared", "per_pixel", "predicted"),
    "objective.name": ("elbo", "iwae"),
    "objective.kl": ("analytic", "mc"),
    "optimizer.name": ("adam", "adamw", "adam_normgrad"),
    "optimizer.schedule": ("constant", "warmup_cosine"),
    "model.compute_dtype": ("float32", "bfloat16"),
    "evaluation.compute_dtype": ("float32", "bfloat16"),
    "runtime.matmul_precision": ("highest", "high", "default"),
    "objective.gradient_estimator": ("reparameterization", "stl", "dreg"),
    "model.prior": ("standard_normal", "mixture", "vampprior"),
    "model.posterior": ("gaussian", "iaf"),
    "model.inference": ("bottom_up", "top_down", "top_down_skip"),
    "evaluation.ais_schedule": ("sigmoidal", "linear"),
    "evaluation.ais_initial": ("posterior", "prior"),
}
# Choices that apply only beside other fields: (field, value) -> the context they need.
CHOICE_CONTEXT = {
    ("objective.gradient_estimator", "stl"): {"objective.kl": "mc"},
    ("objective.gradient_estimator", "dreg"): {"objective.name": "iwae"},
    ("model.prior", "mixture"): {"objective.kl": "mc"},
    ("model.prior", "vampprior"): {"objective.kl": "mc"},
    ("model.posterior", "iaf"): {"objective.kl": "mc"},
    ("model.architecture", "gated_conv"): {"model.activation": "gated"},
    ("model.decoder_reads", "all_layers"): {
        "model.upper_latent_dims": (4,),
        "objective.kl": "mc",
    },
}
# Fields check_config does not look at (data.name is checked against the data).
NO_RANGE = {
    "data.name": "no_such_dataset",
    "data.data_dir": "/no/such/dir",
    "data.validation_split": "no_such_split",
    "runtime.debug_key_reuse": True,
    "runtime.deterministic_gpu_ops": True,
}


def _range_param(row):
    name, leaf, value, accepted, context = (*row, {})[:5]
    verdict = "accepted" if accepted else "refused"
    return pytest.param(name, leaf, value, accepted, context, id=f"{name}={value!r}-{verdict}")


def _check(config, name: str, accepted: bool) -> None:
    if accepted:
        config_checks.check_config(config)
        return
    with pytest.raises(ConfigError) as error:
        config_checks.check_config(config)
    message = str(error.value)
    assert re.match(rf"{re.escape(name)}[= ]", message), message


@pytest.mark.parametrize(
    ("name", "leaf", "value", "accepted", "context"),
    [_range_param(row) for row in RANGE_ROWS],
)
def test_config_ranges_at_and_just_past_their_edges(name, leaf, value, accepted, context):
    """README: invalid values fail in one line naming the field; each range is closed or open
    exactly as config_checks documents it."""
    config = tiny.get_config()
    for dotted, other in context.items():
        apply_overrides(config, {dotted: other})
    config_checks.check_config(config)  # the context alone is valid
    apply_overrides(config, {leaf: value})
    _check(config, name, accepted)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param(field, value, id=f"{field}={value}")
        for field, values in CHOICES.items()
        for value in (*values, "no_such_choice", values[0].upper())
    ],
)
def test_string_fields_accept_their_documented_choices_only(field, value):
    """Every choice base.py documents is accepted; anything else fails naming the field."""
    config = tiny.get_config()
    apply_overrides(config, CHOICE_CONTEXT.get((field, value), {}))
    apply_overrides(config, {field: value})
    _check(config, field, value in CHOICES[field])


@pytest.mark.parametrize(
    ("estimator", "context", "message"),
    [
        ("stl", {}, "applies to the elbo objective with kl='mc'"),
        ("stl", {"objective.name": "iwae"}, "applies to the elbo objective with kl='mc'"),
        ("dreg", {}, "applies to the iwae objective"),
    ],
)
def test_a_gradient_estimator_outside_its_bound_fails_naming_the_field(estimator, context, message):
    config = tiny.get_config()
    apply_overrides(config, {**context, "objective.gradient_estimator": estimator})
    with pytest.raises(
        ConfigError, match=rf"^objective\.gradient_estimator='{estimator}' {re.escape(message)}$"
    ):
        config_checks.check_config(config)


@pytest.mark.parametrize(
    ("conv_channels", "refusal"),
    [
        ((32, 64), None),  # 28 = 7 * 2**2
        ((16, 32, 64), "image size (28, 28) is not divisible by 2**3=8"),
    ],
)
def test_a_conv_model_must_fit_the_image_size(tiny_config, conv_channels, refusal):
    """Checked against the data before any work: one halving per conv layer."""
    tiny_config.model.architecture = "conv"
    tiny_config.model.conv_channels = conv_channels
    if refusal is None:
        config_checks.check_config_against_data(tiny_config)
        return
    with pytest.raises(ConfigError, match=re.escape(f"model.conv_channels={conv_channels}: ")):
        config_checks.check_config_against_data(tiny_config)
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        config_checks.check_config_against_data(tiny_config)


@pytest.mark.parametrize(
    "name",
    sorted(
        p.stem
        for p in (Path(__file__).parents[1] / "experiments" / "configs").glob("*.py")
        if p.stem not in ("__init__", "base")
    ),
)
def test_every_shipped_config_passes_the_config_checks(name):
    """A config in experiments/configs that check_config refuses could not be launched."""
    module = importlib.import_module(f"experiments.configs.{name}")
    config_checks.check_config(module.get_config())


def test_the_range_table_covers_every_field_config_checks_checks():
    """A field added to the config or to config_checks must be added to the tables above."""
    leaves = set(resume.flatten(resume.config_as_json(tiny.get_config())))
    ranged = {row[1] for row in RANGE_ROWS}
    tables = [ranged, set(CHOICES), set(NO_RANGE)]
    assert sum(len(t) for t in tables) == len(set().union(*tables)), "a field in two tables"
    assert set().union(*tables) == leaves
    source_text = inspect.getsource(config_checks)
    mentioned = set(
        re.findall(
            r'"((?:data|model|objective|optimizer|training|evaluation|runtime)\.\w+)', source_text
        )
    )
    bare = set(re.findall(r'"([a-z_]+)"', source_text))
    mentioned |= {leaf for leaf in leaves if leaf.rsplit(".", 1)[-1] in bare}
    if "config.seed" in source_text:
        mentioned.add("seed")
    assert mentioned - ranged - set(CHOICES) == set()
    # The fields without a range really are unchecked.
    config = tiny.get_config()
    for field, value in NO_RANGE.items():
        apply_overrides(config, {field: value})
    config_checks.check_config(config)


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


@pytest.mark.slow
def test_resume_with_a_changed_optimizer_field_fails_and_writes_nothing(
    run, tiny_data_dir, tmp_path
):
    """README: resuming with a config that changes the optimization fails naming the field,
    before anything is written."""
    workdir = tmp_path / "run"
    shutil.copytree(run.stopped, workdir)
    before = files_in(workdir)
    assert {"config.json", "manifest.json", "metrics.jsonl"} <= set(before)
    assert any(name.startswith("checkpoints/33/") for name in before)
    config = tiny_with(tiny_data_dir, **RUN_SETTINGS)
    config.optimizer.b1 = 0.8
    with pytest.raises(ConfigError, match=r"cannot resume: optimizer.b1 is 0.8 .* used 0.9"):
        train_and_evaluate(config, workdir)
    assert files_in(workdir) == before


# --- reproduce compares parameters, optimizer state and every metric. ---


@pytest.mark.slow
def test_reproduce_fails_when_only_the_optimizer_state_differs(run, tmp_path):
    """README: reproduce "compares parameters, optimizer state and every metric bit for
    bit". One element of Adam's second moment moved by one float32 ulp must be named (the
    parameters, compared first, reproduce bit for bit)."""
    workdir = tmp_path / "tampered"
    shutil.copytree(run.stopped, workdir)
    step = STOP_AFTER * STEPS_PER_EPOCH
    _, state, record, _ = load_state(workdir, step)
    adam = state.opt_state[0]
    nu = jax.tree.map(np.array, adam.nu)
    kernel = nu["encoder"]["mlp"]["dense_0"]["kernel"]
    original = float(kernel[3, 5])
    kernel[3, 5] = nudged(kernel[3, 5], np.float32)
    tampered = state._replace(opt_state=(adam._replace(nu=nu), *state.opt_state[1:]))
    shutil.rmtree(workdir / "checkpoints" / str(step))
    checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", 10)
    checkpointer.save(step, tampered, {k: v for k, v in record.items() if k != "state_sha256"})
    checkpointer.close()
    _, reread, _, _ = load_state(workdir)  # the newest: its checksum matches the new contents
    for a, b in zip(jax.tree.leaves(reread), jax.tree.leaves(tampered), strict=True):
        assert np.array_equal(a, b)
    outcome = reproduce(workdir)
    assert not outcome.reproduced
    assert outcome.epoch == STOP_AFTER
    # The leaf's whole path: optax's state tuple index, then Adam's second moment.
    moved = abs(float(kernel[3, 5]) - original)
    assert outcome.difference == (
        f"optimizer state 0/nu/encoder/mlp/dense_0/kernel differs (max |difference| {moved:.3g})"
    )


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [1, 3, 5])
def test_first_differing_metric_sees_any_epoch(run, epoch):
    """reproduce compares every metric of every epoch, wall-clock fields excepted."""
    original = read_metrics(run.workdir)
    assert first_differing_metric(original, copy.deepcopy(original)) is None
    changed = copy.deepcopy(original)
    changed[epoch - 1]["train/kl"] = nudged(changed[epoch - 1]["train/kl"], np.float64)
    difference = first_differing_metric(original, changed)
    assert difference is not None
    recorded, now = original[epoch - 1]["train/kl"], changed[epoch - 1]["train/kl"]
    assert difference == (
        f"metric train/kl of epoch {epoch} differs ({recorded!r} recorded, {now!r} now)"
    )
    # Wall-clock fields are not compared.
    timing = copy.deepcopy(original)
    timing[epoch - 1]["time/epoch_seconds"] += 1.0
    assert first_differing_metric(original, timing) is None


@pytest.mark.slow
@pytest.mark.parametrize("missing", [0, 2, 4], ids=["first", "middle", "last"])
def test_first_differing_metric_sees_a_missing_or_extra_record(run, missing):
    """A record missing from either side, anywhere, is a difference."""
    original = read_metrics(run.workdir)
    shorter = original[:missing] + original[missing + 1 :]
    assert first_differing_metric(original, shorter) is not None
    assert first_differing_metric(shorter, original) is not None


# --- Fingerprints cover every byte of every example. ---


def _split_arrays(num=12, seed=0):
    images, labels = synthetic_images(num, seed)
    return images[..., None], labels.astype(np.int32)


def _alter(images, labels, what: str, index: int):
    images, labels = images.copy(), labels.copy()
    if what == "first image byte":
        images[index, 0, 0, 0] ^= 1
    elif what == "last image byte":
        images[index, -1, -1, -1] ^= 1
    elif what == "label":
        labels[index] = (labels[index] + 1) % 10
    else:
        raise ValueError(what)
    return images, labels


@pytest.mark.parametrize("index", [0, 6, 11], ids=["first", "middle", "last"])
@pytest.mark.parametrize("what", ["first image byte", "last image byte", "label"])
def test_fingerprint_changes_with_any_single_byte_or_label(what, index):
    images, labels = _split_arrays()
    before = source.fingerprint(images, labels)
    assert source.fingerprint(images.copy(), labels.copy()) == before
    assert source.fingerprint(*_alter(images, labels, what, index)) != before


@pytest.mark.parametrize(("i", "j"), [(0, 11), (5, 6)], ids=["ends", "neighbours"])
def test_fingerprint_changes_when_two_examples_swap(i, j):
    images, labels = _split_arrays()
    assert not np.array_equal(images[i], images[j])
    order = np.arange(len(images))
    order[[i, j]] = order[[j, i]]
    assert source.fingerprint(images[order], labels[order]) != source.fingerprint(images, labels)


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory):
    """A small IDX folder (40 train, 10 test) and its train arrays as written."""
    folder = tmp_path_factory.mktemp("small") / "idx"
    arrays = write_idx_folder(folder, 40, 10)
    return folder, arrays


def _recorded_fingerprints(idx_folder: Path, data_dir: Path) -> dict:
    ingest.prepare_local("fashion_mnist", idx_folder, str(data_dir))
    return load_dataset(tiny_with(str(data_dir))).record["fingerprint_sha256"]


@pytest.mark.parametrize(
    ("what", "index"),
    [("first image byte", 0), ("label", 20), ("last image byte", 39)],
    ids=["first-example-pixel", "middle-example-label", "last-example-pixel"],
)
def test_recorded_train_fingerprint_covers_every_example(small_idx, tmp_path, what, index):
    """README: the data's sha256 fingerprints are recorded in every result; one example that
    differs in the IDX files gives another recorded fingerprint."""
    folder, arrays = small_idx
    images, labels = arrays["train"]
    recorded = _recorded_fingerprints(folder, tmp_path / "tfds")
    # The record is the fingerprint of the arrays exactly as written.
    assert recorded["train"] == source.fingerprint(images[..., None], labels.astype(np.int32))
    altered = tmp_path / "idx_altered"
    shutil.copytree(folder, altered)
    new_images, new_labels = _alter(images[..., None], labels.astype(np.int32), what, index)
    idx.write_idx(altered / "train-images-idx3-ubyte.gz", new_images[..., 0])
    idx.write_idx(altered / "train-labels-idx1-ubyte.gz", new_labels.astype(np.uint8))
    recorded_altered = _recorded_fingerprints(altered, tmp_path / "tfds_altered")
    assert recorded_altered["train"] != recorded["train"]
    assert recorded_altered["train"] == source.fingerprint(new_images, new_labels)
    assert recorded_altered["test"] == recorded["test"]
