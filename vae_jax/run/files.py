"""The names of a run's files (one place), JSON I/O, and the data-fingerprint comparison."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from absl import logging

from vae_jax.errors import USER_FIXABLE_ERRNOS, ConfigError, UserFacingError

CONFIG_FILE = "config.json"  # the config, written at the start of every (re)start
MANIFEST_FILE = "manifest.json"  # seed, key streams, environment, data record; resumes appended
REPORT_FILE = "report.json"  # final training metrics; evaluation merged in under "evaluation"
REPORT_MARKDOWN = "report.md"  # the evaluation summary as a table
METRICS_FILE = "metrics.jsonl"  # one JSON record per epoch
DAMAGED_METRICS_FILE = "metrics_damaged_lines.txt"  # lines of metrics.jsonl that were not records
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_DIR = "checkpoints"
# Early stopping: the checkpoint of the best validation epoch so far (evaluated by default)
BEST_CHECKPOINT_DIR = "best_checkpoint"
DAMAGED_CHECKPOINT_DIR = "damaged_checkpoints"  # checkpoints that failed to restore
SUPERSEDED_CHECKPOINT_DIR = "superseded_checkpoints"  # a sweep seed's, past a common epoch
FIGURES_DIR = "figures"
# Evaluations made while a trainer held the workdir: evaluations/step_<N>/ (report.json,
# report.md, figures/), files the trainer never touches.
EVALUATIONS_DIR = "evaluations"
DAMAGED_SUFFIX = ".damaged"  # a damaged JSON file set aside: <name>.damaged-<time>
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


class DamagedFileError(UserFacingError):
    """A JSON file the project wrote cannot be read back (cut short, edited, overwritten)."""


class UnwritableError(UserFacingError):
    """A file could not be written (a full disk, a read-only file system, ...); what was
    already written is intact."""


def user_fixable(error: BaseException) -> bool:
    """Whether ``error`` is an ``OSError`` the user fixes outside the program (space,
    permissions, a read-only or failing file system)."""
    return isinstance(error, OSError) and error.errno in USER_FIXABLE_ERRNOS


def unwritable(error: OSError, path: str | Path | None = None) -> UnwritableError:
    """The one-line error for a write that failed with ``error``."""
    where = path or error.filename or "a file"
    return UnwritableError(
        f"could not write {where} ({error.strerror or error}); what was written before is "
        "intact: free space or fix the directory, then run the same command again"
    )


def write_text(path: str | Path, text: str) -> None:
    """Writes ``text`` atomically (a temporary file of this process, then a rename), so a
    reader, a kill or a full disk never leaves half a file; a failed write raises
    ``UnwritableError`` naming the file, and the previous version stays."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if user_fixable(error):
            raise unwritable(error, path) from None
        raise


def write_json(path: str | Path, obj) -> None:
    """Writes JSON atomically (``write_text``; writers in several processes, e.g. a grid
    sweep's tasks, each write their own temporary file)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _damage(path: Path) -> str | None:
    """Why ``path`` is not readable JSON, or None if it is."""
    try:
        json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as error:
        return f"not JSON at line {error.lineno}, column {error.colno}: {error.msg}"
    return None


# What to do about a damaged file that cannot be rebuilt, by file name.
_CANNOT_REBUILD = {
    MANIFEST_FILE: "it records how the run started and cannot be rebuilt: restore it from a "
    "copy (or move the run's directory aside and train in a new --workdir)",
    CONFIG_FILE: "restore it from a copy: manifest.json holds the config the run started "
    'with under "config" (and each resume\'s under "resumes")',
    SWEEP_FILE: "run the sweep's command again: it sets the damaged file aside and writes "
    "it anew (each run's own files are checked against the command)",
}


def read_json(path: str | Path):
    """The JSON in ``path``; a damaged file raises ``DamagedFileError`` in one line naming
    it and what to do (a missing file raises ``FileNotFoundError`` as before)."""
    path = Path(path)
    text = path.read_bytes()
    try:
        return json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        advice = _CANNOT_REBUILD.get(
            path.name, "move it aside (or delete it) and run the command again to rebuild it"
        )
        raise DamagedFileError(f"{path} is damaged ({_damage(path)}); {advice}") from None


def damage_of(path: str | Path) -> str | None:
    """Why the JSON file ``path`` cannot be read (damaged), or None (readable or absent)."""
    path = Path(path)
    return _damage(path) if path.exists() else None


def set_aside_if_damaged(path: str | Path, rebuilt: str) -> bool:
    """If ``path`` holds damaged JSON, moves it to ``<name>.damaged-<time>`` beside it and
    warns in one line (``rebuilt`` says what replaces it); returns whether it did."""
    path = Path(path)
    why = damage_of(path)
    if why is None:
        return False
    aside = path.with_name(f"{path.name}{DAMAGED_SUFFIX}-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, aside)
    logging.warning("%s is damaged (%s): kept as %s; %s", path, why, aside.name, rebuilt)
    return True


STALE_MARK = "> **Stale:** "


def mark_markdown_stale(path: str | Path, message: str) -> None:
    """Puts ``> **Stale:** <message>`` under the title of the markdown report ``path`` (if
    there is one), replacing an earlier mark, so the page says what ``report.json`` says."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith(STALE_MARK)]
    for i in reversed(marks):  # an earlier mark and the blank line above it
        del lines[i - 1 if i and not lines[i - 1] else i : i + 1]
    at = 1 if lines and lines[0].startswith("#") else 0
    lines[at:at] = ["", f"{STALE_MARK}{message}"]
    write_text(path, "\n".join(lines) + "\n")


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
    # Hierarchies (43c84ff): a run without these fields had one stochastic layer.
    "model.upper_latent_dims": [],
    "model.upper_hidden_sizes": [100, 100],  # unused with one layer; the field's default
    "model.inference": "bottom_up",
    # AIS and BDMC (issue 29): read only by `evaluate --estimator=ais` and `--bdmc`, which a
    # run recorded before them never asked for; the defaults of experiments/configs/base.py.
    "evaluation.ais_num_steps": 1000,
    "evaluation.ais_num_chains": 16,
    "evaluation.ais_leapfrog_steps": 10,
    "evaluation.ais_num_examples": 0,
    "evaluation.ais_chain_chunk_size": 16,
    "evaluation.ais_schedule": "sigmoidal",
    "evaluation.ais_initial": "posterior",
    "evaluation.ais_target_acceptance": 0.65,
    "evaluation.bdmc_num_examples": 100,
    # The reproduction's parts and protocol (issue 27): each value is the behaviour before.
    "data.validation_order": "permuted",
    "model.kernel_init": "lecun_normal",
    "model.log_variance_range": [],
    "model.bernoulli_clip": 0.0,
    "model.decoder_reads": "z1",
    "model.pseudo_inputs": "sigmoid",
    "objective.kl_warmup_epochs": 0,
    "training.early_stopping_patience": 0,
    # Dynamic binarization's protocol versions (issue 32): version 1 is the float uniform
    # per pixel that every run drew before the field existed.
    "data.binarization_version": 1,
    # The mixture priors' log-density layout (issue 27): version 1 is how every run
    # computed it before the field existed.
    "model.mixture_density_version": 1,
    # Steps per iteration of the epoch's compiled loop (issue 32): every run before the
    # field existed ran one.
    "training.epoch_unroll": 1,
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
