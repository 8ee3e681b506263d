"""Every Python snippet of the README runs as written: each ```python block in a fresh
interpreter from the repository root, with the generated Fashion-MNIST as the TFDS data dir
(what ``scripts/prepare_data.py`` leaves in ``~/tensorflow_datasets``)."""

import re
import subprocess
import sys

import pytest

from tests.helpers.repo import REPO, subprocess_env

BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SNIPPETS = BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_the_snippets_this_file_runs():
    assert len(SNIPPETS) >= 2
    assert any("make_vae" in s and "iwae_bound" in s for s in SNIPPETS)
    assert any("load_dataset" in s for s in SNIPPETS)
    assert BLOCK.findall("```python\nprint(1)\n```\n") == ["print(1)\n"]


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_a_readme_snippet_runs_as_written(index, tiny_data_dir):
    result = subprocess.run(
        [sys.executable, "-c", SNIPPETS[index]],
        cwd=REPO,
        env=subprocess_env(TFDS_DATA_DIR=tiny_data_dir, JAX_PLATFORMS="cpu"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
