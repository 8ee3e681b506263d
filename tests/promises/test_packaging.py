"""The project is an installed package: importable and runnable from any directory."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers.repo import REPO


def _run_outside_repository(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs this interpreter in ``tmp_path`` with no PYTHONPATH: only the install finds code."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_packages_import_from_outside_the_repository(tmp_path):
    result = _run_outside_repository(
        tmp_path, "-c", "import vae_jax, experiments.train; print(vae_jax.__file__)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    imported_from = Path(result.stdout.strip().splitlines()[-1]).resolve()
    assert imported_from.is_relative_to(REPO), imported_from


@pytest.mark.slow
def test_train_entry_point_runs_from_outside_the_repository(tmp_path):
    result = _run_outside_repository(tmp_path, "-m", "experiments.train", "--help")
    # absl's --help prints the main module's flags to stdout and exits with status 1; a
    # failed import would exit 1 too, but with a traceback and no flags.
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "--config:" in result.stdout, result.stdout[-2000:]


def test_installed_distribution_has_the_version_of_pyproject():
    with open(REPO / "pyproject.toml", "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert importlib.metadata.version("vae-jax") == version
