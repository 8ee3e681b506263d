"""Hyperparameters that are inputs of the compiled epoch, not constants baked into it.

The fields in ``TRACED`` change no array shape, so every run passes them to its compiled
epoch as traced scalars (``traced_values``): runs that differ only in them (the cells of a
grid sweep) share one program, mapped over a leading axis the way seeds are. A single run
takes the same path, so a sweep's cell computes exactly what the single run with its config
computes.

A field in ``SWITCHES`` is off at 0 and then takes another branch of the program (no free
bits, no warm-up, no clipping): whether it is on belongs to the program's structure, its
value when on is traced. Every other field (widths, latent size, likelihood, K, batch size,
schedule kind, epochs, ...) is structure too: ``structure_key`` tells which configs can
share a program.

The split is made here, once, from the config's numbers: ``switched_on`` (structure, static)
and ``traced_values`` (data, the pytree passed at call time). The factories are told which
switches are on; none of them asks whether a value is traced.
"""

from __future__ import annotations

import json

import jax.numpy as jnp

# Traced fields and their dtype in the compiled program.
TRACED = {
    "objective.beta": jnp.float32,
    "objective.kl_warmup_steps": jnp.int32,
    "objective.free_bits": jnp.float32,
    "optimizer.learning_rate": jnp.float32,
    "optimizer.final_learning_rate_ratio": jnp.float32,
    "optimizer.b1": jnp.float32,
    "optimizer.b2": jnp.float32,
    "optimizer.eps": jnp.float32,
    "optimizer.weight_decay": jnp.float32,
    "optimizer.grad_clip_norm": jnp.float32,
}

# Traced fields that are off at 0 (another branch of the program).
SWITCHES = ("objective.kl_warmup_steps", "objective.free_bits", "optimizer.grad_clip_norm")


def _get(config, field: str):
    group, leaf = field.split(".")
    return config[group][leaf]


def traced_values(config) -> dict[str, jnp.ndarray]:
    """The traced fields' values as scalars, by field name; a switch that is off is left
    out (its branch is not in the program)."""
    return {
        field: jnp.asarray(_get(config, field), dtype)
        for field, dtype in TRACED.items()
        if field not in SWITCHES or _get(config, field) > 0
    }


def switched_on(config) -> frozenset[str]:
    """The fields of ``SWITCHES`` that are on in ``config`` (above 0): structure, fixed
    when the program is built."""
    return frozenset(field for field in SWITCHES if _get(config, field) > 0)


def group_fields(values: dict, group: str) -> dict:
    """``{"beta": value, ...}`` for the fields of one config group (``"objective"``)."""
    prefix = group + "."
    return {name[len(prefix) :]: v for name, v in values.items() if name.startswith(prefix)}


def structure_key(config) -> str:
    """Equal for two configs exactly when they compile to the same training program
    (traced values aside): the config with each traced field replaced by whether it is on."""
    flat = json.loads(config.to_json_best_effort())
    del flat["seed"]
    for field in TRACED:
        group, leaf = field.split(".")
        flat[group][leaf] = "on" if field not in SWITCHES or flat[group][leaf] > 0 else "off"
    return json.dumps(flat, sort_keys=True)
