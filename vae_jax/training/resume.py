"""Starting or resuming a run in a workdir.

A workdir can be resumed with a config when only fields that leave the model, the data and
the optimization unchanged differ (the number of epochs only while the learning-rate
schedule does not span it). ``check_workdir`` runs before anything is written;
``open_run`` checks the data against a run being resumed (reading only), and
``start_run`` writes ``config.json`` and ``manifest.json`` once the run's checkpoint has
restored: a command refused at any point before changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import logging

from vae_jax.errors import ConfigError
from vae_jax.run import files, manifest
from vae_jax.run.directory import RunDirectory

# Fields that may differ on resume (prefixes end with '.').
MAY_CHANGE = (
    "training.num_epochs",
    "training.checkpoint_every_epochs",
    "training.keep_checkpoints",
    "training.eval_batch_size",
    "data.data_dir",  # the data may move; its fingerprints are checked instead
    "evaluation.",
    "runtime.debug_key_reuse",
    "runtime.deterministic_gpu_ops",
    "runtime.num_devices",
    # not runtime.matmul_precision: on GPUs and TPUs it changes the numbers of every step
)


# Fields that change nothing a run computes unless another recorded field has one of the
# given values; otherwise they may differ on resume. (An old run with the standard normal
# prior resumes under a config whose mixture density is version 2.)
INERT_UNLESS = {
    "model.mixture_density_version": ("model.prior", ("mixture", "vampprior")),
}


def inert(field: str, recorded: dict) -> bool:
    """Whether ``field`` changes nothing the run computes, given its recorded (flat) config."""
    if field not in INERT_UNLESS:
        return False
    other, active_values = INERT_UNLESS[field]
    return recorded.get(other) not in active_values


# Fields that set the length of a learning-rate schedule: they may change on resume only
# while the schedule is constant.
SCHEDULE_LENGTH = ("training.num_epochs",)


def flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def config_as_json(config) -> dict:
    """The config as ``config.json`` stores it (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


# Fields a user may change on resume by naming them (``--allow_change=``), e.g. a lower
# learning rate or a tighter clipping norm after a blow-up: the change is recorded as a new
# segment in the manifest and ``reproduce`` replays it.
OPT_IN_PREFIXES = ("optimizer.", "objective.")


def check_allow_change(allow_change, config) -> tuple[str, ...]:
    """The ``--allow_change`` fields, each an optimizer or objective field of ``config``."""
    fields = set(flatten(config_as_json(config)))
    for field in allow_change:
        if field not in fields or not field.startswith(OPT_IN_PREFIXES):
            raise ConfigError(
                f"--allow_change={field}: only optimizer.* and objective.* fields of the "
                "config may change on resume"
            )
    return tuple(allow_change)


def may_change(field: str) -> bool:
    """Whether ``field`` may differ on resume without being named (``MAY_CHANGE``)."""
    return any(field == m or (m.endswith(".") and field.startswith(m)) for m in MAY_CHANGE)


def _check_same_optimizer_state(field: str, old, new) -> None:
    """An opted-in change must keep the optimizer state's structure, or no checkpoint of
    the run could be restored into it: Adam and AdamW differ, and clipping on and off."""
    if field == "optimizer.name" or (
        field == "optimizer.grad_clip_norm" and (old > 0) != (new > 0)
    ):
        raise ConfigError(
            f"--allow_change={field}: {old!r} -> {new!r} changes the optimizer state, so the "
            "run's checkpoints could not be restored into it (a clipping norm may change "
            "from one positive value to another); use a new --workdir"
        )


def check_resumable(recorded_config: dict, config, allow_change=()) -> list[str]:
    """Raises ``ConfigError`` naming the first field that may not change; returns the
    fields that changed and may (``allow_change`` names more that may)."""
    old, new = flatten(recorded_config), flatten(config_as_json(config))
    changed = sorted(
        k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>")
    )
    allowed = []
    for field in changed:
        if field in allow_change:
            _check_same_optimizer_state(field, old.get(field), new.get(field))
            allowed.append(field)
            continue
        if field in SCHEDULE_LENGTH and old.get("optimizer.schedule") != "constant":
            raise ConfigError(
                f"cannot resume: {field} is {new.get(field)!r} but the run in this workdir "
                f"used {old.get(field)!r}, and optimizer.schedule="
                f"{old.get('optimizer.schedule')!r} spans it (every later learning rate would "
                "change); use a new --workdir or the same value"
            )
        if may_change(field) or inert(field, old):
            allowed.append(field)
            continue
        opt_in = (
            f", or --allow_change={field} to change it from here on"
            if field.startswith(OPT_IN_PREFIXES)
            else ""
        )
        raise ConfigError(
            f"cannot resume: {field} is {new.get(field, '<absent>')!r} but the run in this "
            f"workdir used {old.get(field, '<absent>')!r}; use a new --workdir or the same "
            f"value{opt_in}"
        )
    return allowed


def opted_in_changes(workdir: Path, config, allow_change) -> dict:
    """``{field: [recorded, new]}`` of the ``--allow_change`` fields that do change."""
    if not allow_change or not files.run_started(workdir):
        return {}
    old = flatten(files.read_config(workdir))
    new = flatten(config_as_json(config))
    return {f: [old.get(f), new.get(f)] for f in allow_change if old.get(f) != new.get(f)}


def check_workdir(workdir: Path, config, allow_change=()) -> None:
    """Fails (before anything is written) if ``workdir`` cannot hold or resume this run."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir={workdir} exists and is not a directory")
    if (workdir / files.CONFIG_FILE).exists() and not files.run_started(workdir):
        if (workdir / files.CHECKPOINT_DIR).exists() and any(
            (workdir / files.CHECKPOINT_DIR).iterdir()
        ):
            raise ConfigError(
                f"--workdir={workdir} has checkpoints but no {files.MANIFEST_FILE}; it cannot be "
                "resumed safely: move the checkpoints away or use a new --workdir"
            )
        logging.info("%s: a start was cut short; starting afresh", workdir)
    if files.run_started(workdir):
        files.read_json(workdir / files.MANIFEST_FILE)  # damaged: refused now, in one line
        changed = check_resumable(files.read_config(workdir), config, allow_change)
        if changed:
            logging.info("resuming %s with changed fields: %s", workdir, ", ".join(changed))


def open_run(
    workdir: Path,
    config,
    data_record: dict,
    *,
    primary: bool = True,
    label: str = "",
) -> RunDirectory:
    """The run directory of ``config`` in ``workdir``, checked against the data of a run
    it holds; nothing is written yet (``start_run``)."""
    run = RunDirectory(
        workdir,
        seed=config.seed,
        keep_checkpoints=config.training.keep_checkpoints,
        primary=primary,
        label=label,
    )
    run.check_same_data(data_record)
    return run


def start_run(
    run: RunDirectory,
    config,
    data_record: dict,
    *,
    start_epoch: int,
    start_step: int,
    allow_change=(),
) -> None:
    """The start files of ``run`` (restored at ``start_epoch``, global step ``start_step``)
    and its metrics log, opened there."""
    run.begin(
        config_as_json(config),
        manifest.make_manifest(config, data_record),
        start_epoch=start_epoch,
        start_step=start_step,
        segment=opted_in_changes(run.path, config, allow_change),
    )
