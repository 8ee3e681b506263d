"""One training run, stopped and resumed, read by the bookkeeping promises it pins: the
checkpoint schedule and retention, the epoch records (learning rate and beta at the epoch's
last step), a resume that changes an optimizer field refused with nothing written, and
``reproduce`` comparing the optimizer state and every metric record. The tests share the
run (a module fixture), so they stay in one file.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
import optax
import pytest

from tests.helpers.runs import checkpoint_steps
from tests.helpers.tiny import NUM_TRAIN, STEPS_PER_EPOCH, tiny_with
from vae_jax.errors import ConfigError
from vae_jax.reproduce import first_differing_metric, reproduce
from vae_jax.run import checkpointing
from vae_jax.run.loading import load_state
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate

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


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def nudged(value: float, dtype) -> float:
    """The next ``dtype`` number above ``value``: the smallest change a bit-for-bit check
    must see."""
    return float(np.nextafter(dtype(value), dtype(np.inf)))


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
