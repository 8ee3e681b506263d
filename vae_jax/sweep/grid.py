"""A hyperparameter grid: ``--grid`` and ``--zip`` specifications, the cells they name, and
where each cell's seeds run.

``--grid=objective.beta=0.25,0.5,1`` adds an axis; several ``--grid`` flags cross (the
product). All ``--zip`` flags together form one more axis whose fields move together (the
i-th values of each), so they need equally many values. A tuple value is written with
colons (``--grid=model.hidden_sizes=512:256,256:128``). Any config field but ``seed``
(that is ``--seeds``) may be swept; an unknown field, a value of the wrong type or one the
config checks refuse fails in one line, naming the flag, before any work.

A cell is one point of the grid; ``<workdir>/<cell folder>/seed_<s>/`` is a single run
with the cell's config and seed ``s``. The folder is the cell's name with every character
that is not safe in a file name on every common file system (``/``, ``\\``, ``:``,
``*``, ...) percent-encoded, as in URLs (``data.data_dir=%2Fdata%2Fmnist``), so it still
says which values it holds; a name longer than a file name may be is cut and given a hash.
"""

from __future__ import annotations

import hashlib
import itertools
import string
from pathlib import Path
from typing import NamedTuple

from vae_jax import config_checks
from vae_jax.errors import ConfigError


class Cell(NamedTuple):
    name: str  # also its directory: "objective.beta=0.5,optimizer.learning_rate=0.001"
    values: dict  # field -> value, in the order of the flags


def _field_value(config, field: str):
    node = config
    for part in field.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise KeyError(part)
        node = node[part]
    if hasattr(node, "keys"):
        raise KeyError(field)
    return node


def _parse_value(text: str, current, flag: str):
    """``text`` as a value of the type of the field's current value."""
    text = text.strip()
    try:
        if isinstance(current, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, tuple):
            kind = type(current[0]) if current else int
            return tuple(kind(part) for part in text.split(":"))
        return text
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a {type(current).__name__} value") from None


def parse_axis(spec: str, config, flag: str) -> tuple[str, list]:
    """``"field=v1,v2,..."`` -> (field, values) typed like the config's field."""
    where = f"{flag}={spec}"
    field, sep, listed = str(spec).partition("=")
    field = field.strip()
    if not sep or not listed.strip():
        raise ConfigError(f"{where}: write {flag}=<field>=<v1>,<v2>,...")
    if field == "seed":
        raise ConfigError(f"{where}: seeds are swept with --seeds, not {flag}")
    try:
        current = _field_value(config, field)
    except KeyError:
        raise ConfigError(f"{where}: the config has no field {field!r}") from None
    values = [_parse_value(text, current, where) for text in listed.split(",")]
    if len(set(values)) != len(values):
        raise ConfigError(f"{where}: a value is named twice")
    return field, values


def make_cells(config, grid_specs: list[str], zip_specs: list[str]) -> list[Cell]:
    """The cells of the product of the ``--grid`` axes and the one ``--zip`` axis, in
    order (the last axis varies fastest); each cell's config is checked."""
    axes = [[{field: v} for v in values]
            for field, values in (parse_axis(s, config, "--grid") for s in grid_specs)]  # fmt: skip
    zipped = [parse_axis(s, config, "--zip") for s in zip_specs]
    if zipped:
        lengths = {len(values) for _, values in zipped}
        if len(lengths) > 1:
            raise ConfigError(
                "--zip: every zipped field needs as many values: "
                + ", ".join(f"{field} has {len(values)}" for field, values in zipped)
            )
        axes.append([dict(zip([f for f, _ in zipped], vals, strict=True))
                     for vals in zip(*(values for _, values in zipped), strict=True)])  # fmt: skip
    fields = [field for axis in axes for field in axis[0]]
    if len(set(fields)) != len(fields):
        raise ConfigError(f"--grid/--zip: a field is swept twice: {fields}")
    cells = []
    for combination in itertools.product(*axes):
        values = {field: value for part in combination for field, value in part.items()}
        cell = Cell(cell_name(values), values)
        try:
            config_checks.check_config(cell_config(config, cell))
        except ConfigError as error:
            if not cell.values:  # no axes (a seed sweep): the config's own error
                raise
            raise ConfigError(f"grid cell {cell.name}: {error}") from None
        cells.append(cell)
    return cells


def _format(value) -> str:
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    return str(value)


def cell_name(values: dict) -> str:
    """``field=value`` pairs joined by commas: readable, and a valid directory name."""
    return ",".join(f"{field}={_format(value)}" for field, value in values.items())


def cell_config(config, cell: Cell, seed: int | None = None):
    """A copy of the sweep's config with the cell's values (and ``seed``, if given)."""
    copy = config.copy_and_resolve_references()
    for field, value in cell.values.items():
        *groups, leaf = field.split(".")
        node = copy
        for group in groups:
            node = node[group]
        try:
            node[leaf] = value
        except (TypeError, ValueError) as error:
            raise ConfigError(f"grid cell {cell.name}: {field}={value!r}: {error}") from None
    if seed is not None:
        copy.seed = seed
    return copy


# Characters kept as they are in a cell's folder; every other one is percent-encoded.
SAFE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._,=+-")
MAX_FOLDER_NAME = 200  # bytes; file systems allow 255


def cell_folder(name: str) -> str:
    """A cell's folder name: its name, percent-encoding (UTF-8) every character outside
    ``SAFE_CHARACTERS`` and a leading or trailing dot; past ``MAX_FOLDER_NAME`` bytes, cut
    and ended with ``~`` and 16 hex digits of the name's sha256."""
    folder = "".join(
        c if c in SAFE_CHARACTERS else "".join(f"%{b:02X}" for b in c.encode()) for c in name
    )
    if folder.startswith("."):
        folder = "%2E" + folder[1:]
    if folder.endswith("."):
        folder = folder[:-1] + "%2E"
    if len(folder) > MAX_FOLDER_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        folder = f"{folder[: MAX_FOLDER_NAME - 17]}~{digest}"
    return folder


def cell_workdir(workdir: str | Path, cell_name: str, seed: int) -> Path:
    """The run directory of one seed of one cell: ``<workdir>/<cell folder>/seed_<seed>``.
    A grid started before cell folders were encoded keeps its folders (named as the cell,
    e.g. with ``:`` in a tuple's value) when they exist."""
    folder = Path(workdir) / cell_folder(cell_name)
    legacy = Path(workdir) / cell_name
    if legacy != folder and "/" not in cell_name and legacy.is_dir():
        return legacy / f"seed_{seed}"
    return folder / f"seed_{seed}"
