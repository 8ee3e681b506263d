"""``--seeds`` specifications (``0-7``, ``1,3,5``, ``0-3,10``) and where each seed runs."""

from __future__ import annotations

from pathlib import Path

from vae_jax.errors import ConfigError


def parse_seeds(spec: str) -> list[int]:
    """The seeds a specification names, in order; a one-line error naming the flag."""
    seeds: list[int] = []
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if "-" in part:
                first, last = (int(p) for p in part.split("-"))
                if last < first:
                    raise ValueError(f"range {part} runs backwards")
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(part))
    except ValueError as error:
        raise ConfigError(f"--seeds={spec!r}: {error}; write e.g. 0-7 or 1,3,5") from error
    if not seeds:
        raise ConfigError(f"--seeds={spec!r} names no seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds={spec!r} names a seed twice")
    if min(seeds) < 0 or max(seeds) >= 2**32:
        raise ConfigError(f"--seeds={spec!r}: seeds must be in [0, 2**32)")
    return seeds


def seed_workdir(workdir: str | Path, seed: int) -> Path:
    """The run directory of one seed of a sweep: ``<workdir>/seed_<seed>``."""
    return Path(workdir) / f"seed_{seed}"


def seed_config(config, seed: int):
    """A copy of the sweep's config for one seed."""
    copy = config.copy_and_resolve_references()
    copy.seed = seed
    return copy
