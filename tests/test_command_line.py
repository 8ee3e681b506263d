"""The command line as a new user meets it: config files that do not load, overrides
without a config, the resolved config on request, warm-ups that never end, SIGTERM at any
moment."""

from __future__ import annotations

import json
import signal
import sys

import pytest
from run_helpers import TINY_CONFIG, run, run_until, train_command

from experiments.configs import tiny
from vae_jax.run import cli, files
from vae_jax.run.metrics_log import read_metrics
from vae_jax.training import warmups

# --- 7. config files that do not load -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import ml_collections\n\ndef get_config(:\n    return None\n",
            "line 3: invalid syntax",
        ),
        (
            "import ml_collections\n\n\ndef get_config():\n    return undefined_name\n",
            "line 5: NameError: name 'undefined_name' is not defined",
        ),
        ("import ml_collections\n\nCONFIG = 1\n", "defines no get_config()"),
    ],
    ids=["syntax_error", "error_in_get_config", "no_get_config"],
)
def test_a_config_file_that_does_not_load_is_one_line_naming_file_and_line(
    tiny_data_dir, tmp_path, source, expected
):
    config_file = tmp_path / "my_config.py"
    config_file.write_text(source)
    for overrides in ((), ("--config.seed=1",)):
        result = run(train_command(tmp_path / "run", tiny_data_dir, *overrides,
                                   config=str(config_file)))  # fmt: skip
        assert result.returncode == 1
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: --config={config_file}"), last
        assert expected in last, last
        assert "override" not in last
    assert not (tmp_path / "run").exists()


# --- 14. the resolved config, and overrides without a config ----------------------------


@pytest.mark.slow
def test_print_config_prints_every_field_with_the_overrides_and_exits(tmp_path):
    result = run([
        sys.executable, "-m", "experiments.train", f"--config={TINY_CONFIG}", "--print_config",
        "--config.model.latent_dim=3", f"--workdir={tmp_path / 'run'}",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    expected = json.loads(tiny.get_config().to_json_best_effort())
    expected["model"]["latent_dim"] = 3
    assert printed == expected
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written

    sweep = run([
        sys.executable, "-m", "experiments.sweep", f"--config={TINY_CONFIG}", "--print_config",
        "--config.objective.beta=2.0",
    ])  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    assert json.loads(sweep.stdout)["objective"]["beta"] == 2.0


@pytest.mark.slow
def test_evaluate_prints_the_run_config_it_would_use(tiny_run):
    result = run([
        sys.executable, "-m", "experiments.evaluate", f"--workdir={tiny_run.workdir}",
        "--print_config", "--compute_dtype=bfloat16",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    recorded = files.read_config(tiny_run.workdir)
    assert printed == {**recorded, "evaluation": {**recorded["evaluation"],
                                                  "compute_dtype": "bfloat16"}}  # fmt: skip


@pytest.mark.slow
def test_overrides_without_a_config_get_a_one_line_hint(tmp_path):
    result = run([
        sys.executable, "-m", "experiments.train", f"--workdir={tmp_path / 'run'}",
        "--config.model.latent_dim=3",
    ])  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --config.model.latent_dim overrides a field of the --config file, but no "
        "--config is given: add --config=experiments/configs/<name>.py (--print_config shows "
        "its fields)"
    )


# --- 8. warm-ups longer than the training ----------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "schedule", "warned"),
    [
        ("objective.kl_warmup_steps", 33, "constant", False),  # ends at the last step
        ("objective.kl_warmup_steps", 34, "constant", True),
        ("optimizer.warmup_steps", 32, "warmup_cosine", False),  # the peak at the last step
        ("optimizer.warmup_steps", 33, "warmup_cosine", True),
        ("optimizer.warmup_steps", 500, "constant", False),  # no warm-up to speak of
    ],
)
def test_a_warmup_longer_than_the_training_is_named_in_one_line(field, value, schedule, warned):
    config = tiny.get_config()  # 3 epochs of 11 steps on 540 examples: 33 steps
    config.optimizer.schedule = schedule
    group, name = field.split(".")
    config[group][name] = value
    lines = warmups.warmup_warnings(config, num_train_examples=540)
    assert len(lines) == int(warned)
    if warned:
        assert lines[0].startswith(f"{field}={value} is longer than the whole training (33 steps)")
        assert "\n" not in lines[0]


@pytest.mark.slow
def test_training_warns_of_a_warmup_longer_than_the_training(tiny_config, tmp_path, caplog):
    from vae_jax.single_run import train_and_evaluate

    tiny_config.training.num_epochs = 1
    tiny_config.objective.kl_warmup_steps = 100
    with caplog.at_level("WARNING"):
        train_and_evaluate(tiny_config, tmp_path / "run")
    assert "objective.kl_warmup_steps=100 is longer than the whole training (11 steps): " in (
        caplog.text
    )


# --- 11. SIGTERM anywhere: the documented resumable status --------------------------------


@pytest.mark.slow
def test_sigterm_before_the_training_loop_exits_resumable(tiny_data_dir, tmp_path):
    workdir = tmp_path / "run"
    command = train_command(workdir, tiny_data_dir, "--config.training.num_epochs=2")
    lock = workdir / files.LOCK_FILE
    code, stderr = run_until(
        command,
        lambda: lock.exists() and "training" in lock.read_text(),  # building, restoring, compiling
        signal_to_send=signal.SIGTERM,
    )
    assert code == cli.EXIT_STOPPED == 75, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM")
    result = run(command)  # the same command resumes
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["epoch"] for r in read_metrics(workdir)] == [1, 2]


@pytest.mark.slow
def test_sigterm_during_evaluation_exits_resumable(tiny_run, tmp_path):
    import shutil

    workdir = tmp_path / "run"
    shutil.copytree(tiny_run.workdir, workdir)
    lock = workdir / files.LOCK_FILE
    lock.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}",
        "--num_importance_samples=5000",
    ]  # fmt: skip
    code, stderr = run_until(
        command,
        lambda: lock.exists() and "evaluation" in lock.read_text(),
        signal_to_send=signal.SIGTERM,
    )
    assert code == cli.EXIT_STOPPED, stderr[-3000:]
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM")
    report = json.loads((workdir / files.REPORT_FILE).read_text())
    assert report == json.loads((tiny_run.workdir / files.REPORT_FILE).read_text())


def test_the_sigterm_handler_is_restored_after_the_training_loop():
    """Inside the loop the loop's own handler saves at the epoch's end; outside it the
    command's handler stops at once (both exit 75)."""
    from vae_jax.training.preemption import TerminationRequest

    previous = signal.signal(signal.SIGTERM, cli._terminate)
    try:
        with TerminationRequest():
            assert signal.getsignal(signal.SIGTERM) != cli._terminate
        assert signal.getsignal(signal.SIGTERM) == cli._terminate
    finally:
        signal.signal(signal.SIGTERM, previous)
