"""Whether a workdir can be resumed with a config: only fields that leave the model, the
data and the optimization unchanged may differ (the number of epochs only while the
learning-rate schedule does not span it)."""

from __future__ import annotations

import json

from vae_jax.errors import ConfigError

# Fields that may differ on resume (prefixes end with '.').
MAY_CHANGE = (
    "training.num_epochs",
    "training.checkpoint_every_epochs",
    "training.keep_checkpoints",
    "training.eval_batch_size",
    "data.data_dir",  # the data may move; its fingerprints are checked instead
    "evaluation.",
    "runtime.",
)


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


def check_resumable(recorded_config: dict, config) -> list[str]:
    """Raises ``ConfigError`` naming the first field that may not change; returns the
    fields that changed and may."""
    old, new = flatten(recorded_config), flatten(config_as_json(config))
    changed = sorted(
        k for k in old.keys() | new.keys() if old.get(k, "<absent>") != new.get(k, "<absent>")
    )
    allowed = []
    for field in changed:
        if field in SCHEDULE_LENGTH and old.get("optimizer.schedule") != "constant":
            raise ConfigError(
                f"cannot resume: {field} is {new.get(field)!r} but the run in this workdir "
                f"used {old.get(field)!r}, and optimizer.schedule="
                f"{old.get('optimizer.schedule')!r} spans it (every later learning rate would "
                "change); use a new --workdir or the same value"
            )
        if any(field == m or (m.endswith(".") and field.startswith(m)) for m in MAY_CHANGE):
            allowed.append(field)
            continue
        raise ConfigError(
            f"cannot resume: {field} is {new.get(field, '<absent>')!r} but the run in this "
            f"workdir used {old.get(field, '<absent>')!r}; use a new --workdir or the same value"
        )
    return allowed
