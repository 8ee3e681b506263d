"""Named PRNG key streams derived from a run's seed.

Every random number in a run comes from one root key, ``jax.random.key(seed)``. Each
use of randomness has its own *stream*, derived from the root by ``fold_in`` with a fixed
integer id, so that adding a new use never shifts the numbers of an existing one.
Per-step keys are ``fold_in(stream, step)``: step ``t`` draws the same numbers whether the
run got there in one go or was resumed from a checkpoint.

Stream ids are part of the reproducibility contract and are recorded in every run
manifest; never renumber them. The data's keys (fixed binarizations, the validation split)
come from their own seeds with their own tags (``data_key``), never from a run's streams.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Fixed ids of the named streams (recorded in manifest.json).
STREAM_IDS: dict[str, int] = {
    "init": 0,  # parameter initialization
    "data": 1,  # per-epoch shuffle order of the training set
    "binarize": 2,  # dynamic binarization of training batches
    "latent": 3,  # reparameterized z draws during training
    "eval": 4,  # z draws during evaluation (validation, test NLL, diagnostics)
    "generate": 5,  # reserved for draws a user asks for (vae.generate); figures use eval
}

# Tags of the data's keys (fixed, recorded): the fixed binarizations and the permutation
# that carves validation draw from ``fold_in(key(seed), tag)`` with their own seeds
# (``data.binarization_seed``, ``data.split_seed``). The tags lie above every stream id,
# so no data key is a run's stream key: under one root key, fold_in with distinct ids
# gives distinct keys (threefry encrypts the id as one 64-bit block: a bijection), and
# under distinct roots they are as unrelated as two seeds' streams. (Before, with
# ``fold_in(key(binarization_seed), split_id)`` and ``key(split_seed)``, the binarizations
# of train, test and validation were the ``init``, ``data`` and ``binarize`` streams of the
# run with that seed, and the permutation split ``key(split_seed)`` into those streams.)
DATA_KEY_TAGS: dict[str, int] = {"binarization": 1000, "split": 1001}
STREAM_IDS_BELOW = 1000  # every id of STREAM_IDS stays below the data tags

# Sub-streams of ``eval`` (fixed ids): each evaluation quantity draws from its own.
EVAL_PURPOSE_IDS: dict[str, int] = {
    "validation": 0,
    "test_elbo": 1,
    "test_iwae": 2,
    "mutual_information": 3,
    "figures": 4,
    "randomness": 5,
}


class Streams(NamedTuple):
    """The named key streams of one run; a pytree of typed keys (vmap-able over seeds)."""

    init: jax.Array
    data: jax.Array
    binarize: jax.Array
    latent: jax.Array
    eval: jax.Array
    generate: jax.Array


def root_key(seed: int | jax.Array, *, impl: str | None = None) -> jax.Array:
    """The run's root key: a typed key from ``seed`` (``impl`` defaults to JAX's)."""
    return jax.random.key(seed, impl=impl)


def stream(root: jax.Array, name: str) -> jax.Array:
    """The key of the named stream ``name`` under ``root``."""
    if name not in STREAM_IDS:
        raise ValueError(f"unknown key stream {name!r}; known: {sorted(STREAM_IDS)}")
    return jax.random.fold_in(root, STREAM_IDS[name])


def make_streams(seed: int | jax.Array, *, impl: str | None = None) -> Streams:
    """All named streams of a run with this seed. ``seed`` may be traced (for sweeps)."""
    root = root_key(seed, impl=impl)
    return Streams(**{name: stream(root, name) for name in Streams._fields})


def step_key(stream_key: jax.Array, step: int | jax.Array) -> jax.Array:
    """The key of a stream at a given step (or epoch): ``fold_in(stream, step)``."""
    return jax.random.fold_in(stream_key, jnp.asarray(step, jnp.uint32))


def eval_key(eval_stream: jax.Array, purpose: str) -> jax.Array:
    """The key of one evaluation quantity, a fixed sub-stream of the ``eval`` stream."""
    if purpose not in EVAL_PURPOSE_IDS:
        raise ValueError(
            f"unknown evaluation purpose {purpose!r}; known: {sorted(EVAL_PURPOSE_IDS)}"
        )
    return jax.random.fold_in(eval_stream, EVAL_PURPOSE_IDS[purpose])


def example_keys(key: jax.Array, example_ids: jax.Array) -> jax.Array:
    """One key per example, ``fold_in(key, id)``: draws for an example do not depend on
    which batch it is in, how the data is padded or how evaluation is chunked."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(example_ids.astype(jnp.uint32))


def data_key(seed: int, purpose: str) -> jax.Array:
    """The data's key for ``purpose`` (``binarization`` or ``split``) from its own seed:
    ``fold_in(key(seed), DATA_KEY_TAGS[purpose])``, disjoint from every run stream."""
    if purpose not in DATA_KEY_TAGS:
        raise ValueError(f"unknown data key {purpose!r}; known: {sorted(DATA_KEY_TAGS)}")
    return jax.random.fold_in(jax.random.key(seed), DATA_KEY_TAGS[purpose])


def binarization_key(seed: int, split_id: int) -> jax.Array:
    """The key of a split's fixed binarization: ``fold_in(data_key(seed, "binarization"),
    split_id)``."""
    return jax.random.fold_in(data_key(seed, "binarization"), split_id)


def key_impl_name(key: jax.Array) -> str:
    """The name of a typed key's implementation (e.g. ``threefry2x32``), for manifests."""
    return str(jax.random.key_impl(key))


def describe() -> dict:
    """The stream layout, as recorded in a run manifest."""
    return {
        "derivation": "stream = fold_in(key(seed), stream_id); per step: fold_in(stream, step)",
        "stream_ids": dict(STREAM_IDS),
        "eval_purpose_ids": dict(EVAL_PURPOSE_IDS),
        "data_keys": {
            "derivation": "fold_in(key(seed), tag); a fixed binarization: "
            "fold_in(fold_in(key(binarization_seed), tag), split_id)",
            "tags": dict(DATA_KEY_TAGS),
        },
        "default_impl": str(jax.config.jax_default_prng_impl),
    }
