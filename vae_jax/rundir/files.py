"""The names of a run's files (one place), JSON I/O, and the data-fingerprint comparison."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vae_jax.errors import ConfigError

CONFIG_FILE = "config.json"  # the config, written at the start of every (re)start
MANIFEST_FILE = "manifest.json"  # seed, key streams, environment, data record; resumes appended
REPORT_FILE = "report.json"  # final training metrics; evaluation merged in under "evaluation"
REPORT_MARKDOWN = "report.md"  # the evaluation summary as a table
METRICS_FILE = "metrics.jsonl"  # one JSON record per epoch
DAMAGED_METRICS_FILE = "metrics_damaged_lines.txt"  # lines of metrics.jsonl that were not records
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"
DAMAGED_CHECKPOINT_DIR = "damaged_checkpoints"  # checkpoints that failed to restore
SUPERSEDED_CHECKPOINT_DIR = "superseded_checkpoints"  # a sweep seed's, past a common epoch
FIGURES_DIR = "figures"
LOCK_FILE = ".lock"  # held (flock) by the process that owns the workdir; pid, host, start
# A sweep's own files, beside its seed_<s>/ run directories (a grid's: <cell>/seed_<s>/).
SWEEP_FILE = "sweep.json"  # seeds, strategy, config; a grid: its cells, which every task checks
SWEEP_TABLE_JSON = "sweep_table.json"  # every metric per seed, mean, std, 95% interval
SWEEP_TABLE_MARKDOWN = "sweep_table.md"
SWEEP_CURVES_FIGURE = "sweep_curves.png"  # under figures/
GRID_FIELD_FIGURE = "grid_{field}.png"  # under figures/: a grid sweep's metric per swept field


def workdir_path(value: str | Path | None, flag: str = "--workdir") -> Path:
    """The absolute directory a ``--workdir`` value names (``~`` expanded); an empty value
    (an unset shell variable) is refused instead of meaning the current directory."""
    if value is None or not str(value).strip():
        raise ConfigError(f"{flag} is empty; give the run's directory, e.g. {flag}=runs/my_run")
    return Path(value).expanduser().absolute()


def run_started(workdir: str | Path) -> bool:
    """Whether ``workdir`` holds a started run. A start writes ``manifest.json`` and then
    ``config.json``, so a start cut short (a kill, a full disk) leaves neither or only the
    manifest, and the next start begins afresh."""
    return (Path(workdir) / CONFIG_FILE).exists() and (Path(workdir) / MANIFEST_FILE).exists()


def write_json(path: str | Path, obj) -> None:
    """Writes JSON atomically (a reader never sees half a file; writers in several
    processes, e.g. a grid sweep's tasks, each write their own temporary file)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


# Config fields added after runs were first recorded, with the value a run recorded before
# the field existed used: such a run is read as if it had recorded that value.
ADDED_CONFIG_FIELDS = {
    "model.compute_dtype": "float32",
    "evaluation.compute_dtype": "float32",
    "runtime.matmul_precision": "default",  # JAX's own default: full float32 on CPU
    "objective.gradient_estimator": "reparameterization",
    "model.prior": "standard_normal",
    "model.prior_components": 10,
    "model.posterior": "gaussian",
    "model.flow_steps": 2,
    "model.flow_hidden_size": 64,
}


def with_added_fields(config_json: dict) -> dict:
    """A recorded config with every field of ``ADDED_CONFIG_FIELDS`` it lacks."""
    config_json = json.loads(json.dumps(config_json))  # a copy
    for field, value in ADDED_CONFIG_FIELDS.items():
        group, name = field.split(".")
        config_json.setdefault(group, {}).setdefault(name, value)
    return config_json


def read_config(workdir: str | Path) -> dict:
    """A run's ``config.json``, completed by ``with_added_fields``."""
    return with_added_fields(read_json(Path(workdir) / CONFIG_FILE))


def recorded_fingerprints(workdir: str | Path) -> dict[str, str]:
    """The sha256 of each data split a run was trained on (from its manifest)."""
    return read_json(Path(workdir) / MANIFEST_FILE)["data"]["fingerprint_sha256"]


def recorded_data_record(workdir: str | Path) -> dict:
    """The data record (protocol, split rule, fingerprints) a run was trained with."""
    return read_json(Path(workdir) / MANIFEST_FILE)["data"]


def protocol_difference(recorded: dict, now: dict) -> str | None:
    """How the preprocessing protocol and split rule of the data record ``now`` differ from
    the ``recorded`` ones (the first differing entry), or None. The fingerprints cover the
    source data only: a binarization or validation split drawn with other keys (another
    config or another vae-jax version) shows here."""
    for part in ("protocol", "splits"):
        old, new = recorded.get(part, {}), now.get(part, {})
        for name in sorted(set(old) | set(new)):
            if old.get(name) != new.get(name):
                return (
                    f"the data's {part}.{name} is {new.get(name)!r} now but "
                    f"{old.get(name)!r} in the run's manifest"
                )
    return None


def data_difference(
    recorded: dict[str, str], now: dict[str, str], splits: tuple[str, ...] | None = None
) -> str | None:
    """How the data fingerprints ``now`` differ from the ``recorded`` ones (only
    ``splits``, if given), or None if they are the same."""
    if splits is not None:
        recorded = {s: recorded.get(s) for s in splits}
        now = {s: now.get(s) for s in splits}
    if recorded == now:
        return None
    which = "the " + "/".join(splits) + " data differ" if splits else "the data differ"
    return f"{which} (sha256 {recorded} recorded, {now} now)"
