"""Early stopping (``vae_jax.training.early_stopping`` and its place in ``fit``): the
VampPrior code's rule, the best checkpoint, resuming, and evaluating the best epoch."""

import math
import shutil

import jax
import numpy as np
import pytest

from vae_jax import adapter
from vae_jax.run import files, loading
from vae_jax.run.checkpointing import Checkpointer
from vae_jax.run.metrics_log import read_metrics, without_timing
from vae_jax.single_run import train_and_evaluate
from vae_jax.training.early_stopping import STOP, EarlyStopping


def _vampprior_code_loop(losses, patience, warmup):
    """``density_estimation.py``'s loop, transcribed: returns (last epoch, best epoch)."""
    best_loss, e, best_epoch, epoch = math.inf, 0, 0, 0
    for epoch in range(1, len(losses) + 1):
        val_loss_epoch = losses[epoch - 1]
        if val_loss_epoch < best_loss:
            e = 0
            best_loss = val_loss_epoch
            best_epoch = epoch
        else:
            e += 1
            if epoch < warmup:
                e = 0
            if e > patience:
                break
    return epoch, best_epoch


@pytest.mark.parametrize("seed", range(40))
def test_the_rule_is_the_vampprior_codes(seed):
    """On random validation curves (a trend, noise and plateaus), the epoch training stops
    after and the best epoch are those of the original loop, warm-up included (fails if the
    count were reset during the warm-up differently, stopped at ``>=`` patience, or compared
    with ``>=``)."""
    rng = np.random.default_rng(seed)
    num = int(rng.integers(5, 120))
    trend = -np.sqrt(np.arange(num)) * rng.uniform(0, 2)
    losses = np.round(trend + rng.normal(0, rng.uniform(0.1, 1.0), num), 1)  # ties happen
    patience, warmup = int(rng.integers(1, 8)), int(rng.integers(0, 30))
    expected_last, expected_best = _vampprior_code_loop(list(losses), patience, warmup)
    count = EarlyStopping(patience, warmup)
    last = num
    for epoch, loss in enumerate(losses, start=1):
        if count.update(epoch, -loss, step=epoch) == STOP:
            last = epoch
            break
    assert (last, count.best_epoch) == (expected_last, expected_best)
    assert count.stopped == (last < num or expected_last < num)
    replayed = EarlyStopping.replay(
        [{"epoch": e, "step": e, "validation/elbo": -v} for e, v in enumerate(losses[:last], 1)],
        patience=patience,
        kl_warmup_epochs=warmup,
    )
    assert replayed == count


def _config(tiny_config, **training):
    """A tiny run whose validation ELBO turns around within ~15 epochs (a large learning
    rate), with patience 1 and every epoch's checkpoint kept."""
    config = tiny_config
    config.optimizer.learning_rate = 0.03
    config.training.num_epochs = 40
    config.training.early_stopping_patience = 1
    config.training.keep_checkpoints = 100
    for field, value in training.items():
        config.training[field] = value
    return config


def _restore(workdir, folder, step):
    """The train state of checkpoint ``step`` in ``workdir/folder``."""
    config = loading.load_config(workdir)
    vae = adapter.vae_from_config(config, loading.image_shape_of_run(workdir))
    checkpointer = Checkpointer(workdir / folder, 1, read_only=True)
    try:
        state, _ = checkpointer.restore(step, loading.abstract_train_state(vae, config))
    finally:
        checkpointer.close()
    return state


def _assert_same_bits(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory, tiny_data_dir):
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    workdir = tmp_path_factory.mktemp("early") / "run"
    report = train_and_evaluate(_config(config), workdir, announce=False)
    return workdir, report


@pytest.mark.slow
def test_a_run_stops_after_patience_and_keeps_its_best_epoch(stopped_run):
    """The run ends ``patience + 1`` epochs after its best validation ELBO, before
    ``num_epochs``; ``best_checkpoint/`` holds exactly that epoch's state (bit-equal to the
    regular checkpoint of the same step), and loading the run gives it by default."""
    workdir, report = stopped_run
    records = read_metrics(workdir)
    elbos = [r["validation/elbo"] for r in records]
    best = int(np.argmax(elbos)) + 1
    summary = report["early_stopping"]
    assert summary["stopped_early"]
    assert report["status"] == "complete"
    assert summary["best_epoch"] == best == report["best_validation"]["epoch"]
    assert report["epochs_completed"] == len(records) == best + 2 < 40
    best_step = records[best - 1]["step"]
    assert summary["best_step"] == best_step
    steps = sorted(int(p.name) for p in (workdir / files.BEST_CHECKPOINT_DIR).iterdir())
    assert steps == [best_step]
    _, loaded, _, _ = loading.load_state(workdir)
    assert int(loaded.step) == best_step  # the default load is the best epoch's
    _assert_same_bits(loaded, _restore(workdir, files.CHECKPOINT_DIR, best_step))


@pytest.mark.slow
def test_a_finished_run_trains_no_further(stopped_run, tmp_path):
    """Running an early-stopped run's command again adds no epoch (the count is replayed
    from its records, already past the patience)."""
    workdir, report = stopped_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.data_dir = files.read_config(workdir)["data"]["data_dir"]
    again = train_and_evaluate(_config(config), copy, announce=False)
    assert again["epochs_completed"] == report["epochs_completed"]
    assert len(read_metrics(copy)) == len(read_metrics(workdir))


@pytest.mark.slow
def test_an_interrupted_run_resumes_its_count_and_ends_as_an_unbroken_one(stopped_run, tmp_path):
    """Stopped one epoch after its best (the count at 1 of 2) and resumed: the same
    records, stop epoch, best epoch and best checkpoint bits as the unbroken run; the best
    checkpoints the resumed run recomputes replace the ones past the resume point."""
    workdir, report = stopped_run
    best = report["early_stopping"]["best_epoch"]
    from experiments.configs import tiny

    config = tiny.get_config()
    config.data.data_dir = files.read_config(workdir)["data"]["data_dir"]
    resumed = tmp_path / "resumed"
    train_and_evaluate(_config(config, checkpoint_every_epochs=1), resumed,
                       stop_after_epoch=best + 1, announce=False)  # fmt: skip
    config = tiny.get_config()
    config.data.data_dir = files.read_config(workdir)["data"]["data_dir"]
    final = train_and_evaluate(_config(config), resumed, announce=False)
    assert final["early_stopping"] == report["early_stopping"]
    assert [without_timing(r) for r in read_metrics(resumed)] == [
        without_timing(r) for r in read_metrics(workdir)
    ]
    step = report["early_stopping"]["best_step"]
    assert sorted(int(p.name) for p in (resumed / files.BEST_CHECKPOINT_DIR).iterdir()) == [step]
    _assert_same_bits(
        _restore(resumed, files.BEST_CHECKPOINT_DIR, step),
        _restore(workdir, files.BEST_CHECKPOINT_DIR, step),
    )


def test_sweeps_refuse_early_stopping_in_one_line(tiny_config, tmp_path):
    """Seeds of one program train the same epochs: a sweep with a patience is refused
    before any work, naming the field (train each seed as its own run instead)."""
    from vae_jax.errors import ConfigError
    from vae_jax.sweep import runner

    tiny_config.training.early_stopping_patience = 5
    with pytest.raises(ConfigError, match=r"training\.early_stopping_patience=5") as error:
        runner.check_before_start(tiny_config, tmp_path / "sweep", [0, 1], "auto")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "sweep").exists()
