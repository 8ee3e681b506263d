"""Helpers for tests that run training: subprocesses, kills, comparing runs, TB events."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

import vae_jax
from tests.helpers.repo import REPO, subprocess_env
from vae_jax.run.metrics_log import read_metrics, without_timing

TINY_CONFIG = "experiments/configs/tiny.py"


def apply_overrides(config, overrides: dict):
    """Sets ``{"group.field": value}`` (or top-level ``{"seed": value}``) entries on a
    config; returns it."""
    for dotted, value in overrides.items():
        *groups, field = dotted.split(".")
        node = config
        for group in groups:
            node = node[group]
        node[field] = value
    return config


def train_command(workdir: Path, data_dir: str, *overrides: str, config=TINY_CONFIG) -> list[str]:
    return [
        sys.executable,
        "-m",
        "experiments.train",
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *overrides,
    ]


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout
    )


def checkpoint_steps(workdir: Path) -> list[int]:
    folder = Path(workdir) / "checkpoints"
    if not folder.exists():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def saving_in_progress(workdir: Path) -> bool:
    folder = Path(workdir) / "checkpoints"
    return folder.exists() and any("tmp" in p.name for p in folder.iterdir())


def run_until(
    command: list[str],
    condition: Callable[[], bool],
    *,
    signal_to_send: int = signal.SIGKILL,
    timeout: float = 300,
    poll_seconds: float = 0.001,
    env_extra: dict | None = None,
) -> tuple[int, str]:
    """Starts ``command`` (with ``env_extra`` in its environment), sends ``signal_to_send``
    as soon as ``condition()`` holds, and returns (exit code, stderr). Fails if the process
    ends before the condition holds."""
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=subprocess_env(**(env_extra or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout
    try:
        while not condition():
            if process.poll() is not None:
                _, err = process.communicate()
                raise AssertionError(
                    f"process ended (code {process.returncode}) before the condition held:\n"
                    + err.decode()[-3000:]
                )
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the condition")
            time.sleep(poll_seconds)
        os.kill(process.pid, signal_to_send)
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err.decode()


def final_params(workdir: Path):
    _, params, _ = vae_jax.load_run(workdir)
    return params


def assert_same_params(a, b) -> None:
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for path, x, y in zip(
        [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(a)],
        leaves_a,
        leaves_b,
        strict=True,
    ):
        assert np.array_equal(np.asarray(x), np.asarray(y)), f"parameter {path} differs"


def assert_same_metrics(workdir_a: Path, workdir_b: Path) -> None:
    a = [without_timing(r) for r in read_metrics(workdir_a)]
    b = [without_timing(r) for r in read_metrics(workdir_b)]
    assert a == b


def read_tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of every event file in ``logdir``, read from the TFRecord framing and the
    Event protos directly (an independent check of what TensorBoard will show)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            payload = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event()
            event.ParseFromString(payload)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def event_file_scalars_of_metrics(workdir: Path) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard should show for ``metrics.jsonl``: each finite number of each
    record at its step, as float32 (how event files store scalars)."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for record in read_metrics(workdir):
        for name, value in record.items():
            if name not in ("epoch", "step") and isinstance(value, float) and np.isfinite(value):
                expected.setdefault(name, []).append((record["step"], float(np.float32(value))))
    return expected


def assert_event_files_agree_with_metrics(workdir: Path) -> None:
    """The event files of ``workdir`` hold every record of ``metrics.jsonl``, each once, in
    order, and nothing else."""
    assert read_tensorboard_scalars(Path(workdir) / "tensorboard") == (
        event_file_scalars_of_metrics(workdir)
    )


@contextlib.contextmanager
def counting_compilations():
    """Counts XLA compilations per function name, from JAX's own compile log
    (``jax.log_compiles``): ``counts["train_epoch"]`` after the block."""
    counts = collections.Counter()

    class Count(logging.Handler):
        def emit(self, record):
            found = re.match(r"Compiling jit\((\w+)\)", record.getMessage())
            if found:
                counts[found.group(1)] += 1

    handler, jax_logger = Count(), logging.getLogger("jax")
    jax_logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield counts
    finally:
        jax_logger.removeHandler(handler)
