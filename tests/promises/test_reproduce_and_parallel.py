"""Reproduction from the manifest (``reproduce`` prints ``reproduced``, names a changed leaf,
warns of another commit, replays a prefix) and data parallelism over devices and processes
agreeing with one device; the tests share one finished run (a module fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np
import pytest

from tests.helpers.repo import REPO, subprocess_env
from tests.helpers.runs import final_params, train_command
from vae_jax.errors import CheckpointError
from vae_jax.reproduce import environment_warnings, reproduce
from vae_jax.run import checkpointing, manifest
from vae_jax.run.loading import load_state
from vae_jax.run.metrics_log import read_metrics, without_timing

# Data parallel over 4 CPU devices sums each gradient in 4 parts before adding them, so
# the numbers drift from the 1-device run by rounding: measured here, metrics agree to
# about 1e-8 relative after 3 epochs of `tiny` (33 steps); allowed: 1e-5.
DATA_PARALLEL_RELATIVE_TOLERANCE = 1e-5
PARALLEL_FLAGS = ["--config.training.batch_size=40"]


def _run(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO, env=env or subprocess_env(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data_dir):
    workdir = tmp_path_factory.mktemp("finished") / "run"
    result = _run(train_command(workdir, tiny_data_dir, *PARALLEL_FLAGS))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def _reproduce(workdir, *flags):
    return _run([sys.executable, "-m", "experiments.reproduce", f"--workdir={workdir}", *flags])


@pytest.mark.slow
def test_reproduce_prints_reproduced(finished_run):
    result = _reproduce(finished_run)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith("reproduced")


@pytest.mark.slow
def test_reproduce_names_the_changed_leaf_and_exits_1(finished_run, tmp_path):
    workdir = tmp_path / "tampered"
    shutil.copytree(finished_run, workdir)
    _, state, record, _ = load_state(workdir)
    step = int(state.step)
    params = jax.tree.map(np.asarray, state.params)
    params["decoder"]["pixels"]["bias"] = params["decoder"]["pixels"]["bias"] + 1e-3
    tampered = state._replace(params=params)
    shutil.rmtree(workdir / "checkpoints" / str(step))
    checkpointer = checkpointing.Checkpointer(workdir / "checkpoints", 3)
    checkpointer.save(step, tampered, {k: v for k, v in record.items() if k != "state_sha256"})
    checkpointer.close()
    result = _reproduce(workdir)
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert "parameter decoder/pixels/bias differs" in last, last


@pytest.mark.slow
def test_reproduce_warns_when_the_code_is_another_commit(finished_run, tmp_path, monkeypatch):
    # A change of code can change the bits of the same config: reproduce names the commits.
    workdir = tmp_path / "other_code"
    shutil.copytree(finished_run, workdir)
    recorded = json.loads((workdir / "manifest.json").read_text())
    recorded["git"] = {"commit": "a" * 40, "dirty": False}
    (workdir / "manifest.json").write_text(json.dumps(recorded))

    def code_warnings():
        return [w for w in environment_warnings(workdir) if w.startswith("code")]

    monkeypatch.setattr(manifest, "git_state", lambda: {"commit": "b" * 40, "dirty": False})
    assert code_warnings() == ["code: trained at commit aaaaaaaaaaaa, this is commit bbbbbbbbbbbb"]
    monkeypatch.setattr(manifest, "git_state", lambda: {"commit": "a" * 40, "dirty": True})
    assert code_warnings() == []  # the same commit
    monkeypatch.setattr(manifest, "git_state", lambda: {"commit": None, "dirty": None})
    assert code_warnings() == []  # outside git: nothing to compare


@pytest.mark.slow
def test_reproduce_a_prefix_and_refuse_a_missing_epoch(finished_run, tmp_path, capsys):
    # The manifest says the run used another jax: reproduce warns first, naming it (the
    # usual reason a re-run is not bit-identical), and still compares.
    workdir = tmp_path / "other_versions"
    shutil.copytree(finished_run, workdir)
    recorded = json.loads((workdir / "manifest.json").read_text())
    recorded["environment"]["packages"]["jax"] = "0.0.1"
    (workdir / "manifest.json").write_text(json.dumps(recorded))
    outcome = reproduce(workdir, epochs=2)
    assert outcome.reproduced, outcome.difference
    assert outcome.epoch == 2
    assert len(outcome.warnings) == 1
    assert outcome.warnings[0].startswith("packages: recorded")
    assert "'jax': '0.0.1'" in outcome.warnings[0]
    printed = capsys.readouterr().out
    assert "warning: the environment differs from the manifest's: packages" in printed
    with pytest.raises(
        CheckpointError, match=r"--epochs=9: .* has checkpoints of epochs \[1, 2, 3\] only"
    ):
        reproduce(finished_run, epochs=9)


def _close_params(workdir_a, workdir_b) -> None:
    """Parameters agree within the tolerance; loading a run saved from several devices or
    processes into this 1-device process is part of the check."""
    a, b = final_params(workdir_a), final_params(workdir_b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        scale = np.max(np.abs(x)) + 1e-12
        assert np.max(np.abs(x - y)) / scale < DATA_PARALLEL_RELATIVE_TOLERANCE


def _close(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        x, y = without_timing(x), without_timing(y)
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_allclose(
                y[key], x[key], rtol=DATA_PARALLEL_RELATIVE_TOLERANCE, err_msg=key
            )


@pytest.mark.slow
def test_four_devices_agree_with_one(finished_run, tiny_data_dir, tmp_path):
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    never, sharded = tmp_path / "never", tmp_path / "sharded"
    # The two commands are independent and run side by side (the refused one is JAX's
    # start-up only, hidden behind the other's).
    with ThreadPoolExecutor(2) as pool:
        refused, result = pool.map(
            lambda command: _run(command, env),
            [
                train_command(never, tiny_data_dir, "--config.training.batch_size=50"),
                train_command(sharded, tiny_data_dir, *PARALLEL_FLAGS),
            ],
        )
    # A batch the mesh cannot split fails in one line, before anything is written.
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: training.batch_size=50 is not divisible by the 4 devices of the mesh; "
        "use a multiple of 4 or set runtime.num_devices"
    )
    assert not never.exists()
    assert result.returncode == 0, result.stderr[-3000:]
    recorded = json.loads((sharded / "manifest.json").read_text())["environment"]
    assert len(recorded["devices"]) == 4
    _close(read_metrics(finished_run), read_metrics(sharded))
    _close_params(finished_run, sharded)


@pytest.mark.slow
def test_two_processes_on_loopback_agree_with_one(finished_run, tiny_data_dir, tmp_path):
    workdir = tmp_path / "two_processes"
    port = 20000 + os.getpid() % 20000
    processes = []
    for i in range(2):
        flags = [
            f"--coordinator_address=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        ]
        command = [*train_command(workdir, tiny_data_dir, *PARALLEL_FLAGS), *flags]
        processes.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=subprocess_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()[-3000:]
    recorded = json.loads((workdir / "manifest.json").read_text())["environment"]
    assert recorded["process_count"] == 2
    assert len(list((workdir / "tensorboard").iterdir())) == 1  # only process 0 writes
    _close(read_metrics(finished_run), read_metrics(workdir))
    _close_params(finished_run, workdir)
