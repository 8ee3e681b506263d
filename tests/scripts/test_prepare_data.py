"""``scripts/prepare_data.py``: bad input is one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.idx_data import _corrupt, write_idx_folder
from tests.helpers.repo import REPO, subprocess_env


@pytest.mark.slow
def test_prepare_data_cli_reports_one_line_and_exits_nonzero(tmp_path):
    write_idx_folder(tmp_path / "idx", 20, 10)
    _corrupt(tmp_path / "idx", "truncated")
    result = subprocess.run(
        [
            sys.executable,
            "scripts/prepare_data.py",
            f"--idx_dir={tmp_path / 'idx'}",
            f"--data_dir={tmp_path / 'tfds'}",
        ],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: "), result.stderr
    assert "truncated" in last_line
    assert "Traceback" not in result.stderr
