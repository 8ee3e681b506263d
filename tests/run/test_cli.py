"""``vae_jax/run/cli.py`` and the entry points as a new user meets them: config files that
do not load, overrides without a config, the resolved config on request, SIGTERM at any
moment."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from experiments.configs import tiny
from tests.helpers.runs import TINY_CONFIG, run, run_until, train_command
from vae_jax.run import cli, files
from vae_jax.run.metrics_log import read_metrics

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
def test_evaluate_prints_the_sampling_and_ais_flags_it_would_use(tiny_run):
    """--print_config shows the evaluation as the flags set it: K, chunk, batch and every
    AIS flag given; the fields of flags not given stay as recorded."""
    result = run([
        sys.executable, "-m", "experiments.evaluate", f"--workdir={tiny_run.workdir}",
        "--print_config", "--num_importance_samples=7", "--ais_num_steps=33",
        "--ais_schedule=linear", "--bdmc_num_examples=4",
    ])  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)
    recorded = files.read_config(tiny_run.workdir)
    given = {"num_importance_samples": 7, "ais_num_steps": 33, "ais_schedule": "linear",
             "bdmc_num_examples": 4}  # fmt: skip
    assert all(recorded["evaluation"][name] != value for name, value in given.items())
    assert printed == {**recorded, "evaluation": {**recorded["evaluation"], **given}}


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
