"""The run manifest: everything needed to reproduce a run and to know if that is possible.

Recorded at the start of a run: seed, key implementation and stream ids, the config,
package versions, XLA flags and JAX settings that change numerics, backend and devices,
the git commit, and the data record (protocol, split rule, fingerprints).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import jax

from vae_jax.core import rng

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "tensorflow-datasets",
    "numpy",
    "absl-py",
    "ml_collections",
)
# JAX settings that change the numbers a run produces.
JAX_SETTINGS = (
    "jax_default_prng_impl",
    "jax_threefry_partitionable",
    "jax_enable_x64",
    "jax_default_matmul_precision",
)
REPO = Path(__file__).resolve().parents[1]


def package_versions() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_state(repo: Path = REPO) -> dict:
    """The commit, whether the work tree has uncommitted changes to tracked files, and
    then the sha256 of those changes (``git diff HEAD``), so that ``reproduce`` can tell
    code no commit holds from the same uncommitted code (None outside git)."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
        diff = git("diff", "HEAD", "--no-ext-diff", "--binary") if dirty else ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    state = {"commit": commit, "dirty": dirty}
    if dirty:
        state["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    return state


def environment() -> dict:
    """Backend, devices, flags and versions: what must match for bit-exact reproduction."""
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else None,
        "process_count": jax.process_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_settings": {name: _jax_setting(name) for name in JAX_SETTINGS},
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def _jax_setting(name: str):
    value = getattr(jax.config, name, None)
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def make_manifest(config, data_record: dict, extra: dict | None = None) -> dict:
    root = rng.root_key(config.seed)
    return {
        "created": now(),
        "command": sys.argv,
        "seed": int(config.seed),
        "key_impl": rng.key_impl_name(root),
        "key_streams": rng.describe(),
        "deterministic_gpu_ops_requested": bool(config.runtime.deterministic_gpu_ops),
        "config": json.loads(config.to_json_best_effort()),
        "environment": environment(),
        "git": git_state(),
        "data": data_record,
        **(extra or {}),
    }


def code_differences(recorded: dict | None, current: dict) -> list[str]:
    """The code's commit, when both are known and differ: a change of code can change the
    bits of the same config (e.g. c521c5f made hyperparameters float32 inputs)."""
    before, now = (recorded or {}).get("commit"), current.get("commit")
    if before and now and before != now:
        return [f"code: trained at commit {before[:12]}, this is commit {now[:12]}"]
    return []


def environment_differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences in what bit-exact reproduction depends on."""
    differences = []
    for key in ("backend", "device_kind", "xla_flags", "jax_settings", "packages", "machine"):
        if recorded.get(key) != current.get(key):
            differences.append(f"{key}: recorded {recorded.get(key)!r}, now {current.get(key)!r}")
    return differences
