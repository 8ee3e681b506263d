"""Preprocessing that says what it did: intensities, binarization protocols, 8-bit integers.

Images stay uint8 on the device; ``train_input`` and ``eval_input`` turn a gathered batch
into what the model sees, inside the compiled step:

* ``none``: intensities ``x / 255`` in [0, 1] (continuous Bernoulli, Gaussian), or the
  integers themselves for the discretized logistic.
* ``static``: one fixed binarization of every split, drawn once with the key
  ``fold_in(fold_in(key(binarization_seed), 1000), split_id)`` (``rng.binarization_key``:
  the data's own tag 1000, so it is no run's stream key; ``static_method="sample"``) or
  by thresholding at 0.5 (``"threshold"``); identical in every run that names it.
* ``dynamic``: a fresh ``Bernoulli(x / 255)`` draw per example per step with the key
  ``fold_in(binarize_stream, step)`` (Burda et al., 2015); validation and test images are
  binarized once, as ``static`` with ``sample``, so every run is scored on the same bits.
  How a step turns its key into bits is the protocol's version
  (``data.binarization_version``, recorded): version 1 (runs recorded before the field)
  compares a float32 uniform per pixel with ``x / 255`` (``dynamic_binarize``); version 2
  (new runs) spends 8 random bits per pixel, exactly ``Bernoulli(x / 255)`` for 8-bit
  intensities (``dynamic_binarize_bytes``, derivation in its docstring).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vae_jax.core import draws, likelihoods, rng

BINARIZATIONS = ("none", "static", "dynamic")
STATIC_METHODS = ("sample", "threshold")
# Fixed ids of the source splits in the static binarization key (recorded).
SPLIT_IDS = {"train": 0, "test": 1, "validation": 2}
# Versions of dynamic binarization's training draw (``data.binarization_version``):
# 1, a float32 uniform per pixel (runs recorded before the field); 2, 8 random bits per
# pixel with exact probabilities (new runs). The evaluation sets are drawn alike in both.
BINARIZATION_VERSIONS = (1, 2)
# Version 2: a redraw round draws one 32-bit word (4 bytes) per this many pixels of the
# batch, rounded up: a byte per 128 pixels, twice the 1/256 of pixels expected at 255.
REDRAW_PIXELS_PER_WORD = 512
# The redraw rounds run on at most this many times a round's bytes of gathered pixels
# (``redraw_compacted``), else over the whole batch; either way the same bits.
REDRAW_CAPACITY = 2


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How stored uint8 images become model inputs (static; hashable for jit)."""

    kind: str  # likelihoods.BINARY | INTENSITY | INTEGER
    binarization: str = "none"
    static_method: str = "sample"
    binarization_seed: int = 0
    already_binary: bool = False  # the stored pixels are {0, 1} (e.g. binarized_mnist)
    # dynamic: how a training step draws (BINARIZATION_VERSIONS); 1 unless told, as for a
    # run recorded before the version existed
    binarization_version: int = 1

    def store_for_evaluation(self, images: np.ndarray, split: str) -> np.ndarray:
        """The uint8 array kept on the device to evaluate on a source split: binarized
        once (static, and dynamic's evaluation protocol), else the pixels as read."""
        if self.already_binary or self.binarization == "none":
            return images
        method = self.static_method if self.binarization == "static" else "sample"
        return binarize_once(images, method, self.binarization_seed, split)

    def store_for_training(self, images: np.ndarray) -> np.ndarray:
        """The uint8 array kept on the device to train on: as for evaluation, except that
        dynamic binarization keeps the intensities and draws afresh at every step."""
        if self.binarization == "dynamic" and not self.already_binary:
            return images
        return self.store_for_evaluation(images, "train")

    def train_input(self, stored: jax.Array, binarize_key: jax.Array) -> jax.Array:
        """A training batch as the model sees it (``binarize_key`` used only if dynamic)."""
        if self.binarization == "dynamic" and not self.already_binary:
            if self.binarization_version == 2:
                return dynamic_binarize_bytes(binarize_key, stored)
            if self.binarization_version == 1:
                return dynamic_binarize(binarize_key, stored)
            raise ValueError(
                f"binarization_version={self.binarization_version!r}; choose one of "
                f"{list(BINARIZATION_VERSIONS)}"
            )
        return self.eval_input(stored)

    def eval_input(self, stored: jax.Array) -> jax.Array:
        """A validation or test batch as the model sees it (no randomness)."""
        if self.kind == likelihoods.INTEGER:
            return stored.astype(jnp.int32)
        scale = 1.0 if self.binarized_at_rest else 1.0 / 255.0
        return stored.astype(jnp.float32) * scale

    @property
    def binarized_at_rest(self) -> bool:
        """Whether stored validation/test images are already {0, 1}."""
        return self.already_binary or self.binarization != "none"

    def describe(self) -> dict:
        """The protocol, as recorded in every result."""
        if self.kind == likelihoods.INTEGER:
            representation = "8-bit integers in {0, ..., 255}"
        elif self.kind == likelihoods.INTENSITY:
            representation = "intensities x / 255 in [0, 1]"
        else:
            representation = "binary {0, 1}"
        protocol = {"binarization": self.binarization, "representation": representation}
        tag = rng.DATA_KEY_TAGS["binarization"]
        static_key = (
            f"fold_in(fold_in(key({self.binarization_seed}), {tag}), split_id), "
            f"split_id={SPLIT_IDS}"
        )
        if self.already_binary:
            protocol["binarization"] = "none (the dataset is stored binarized)"
        elif self.binarization == "static":
            protocol["train"] = protocol["evaluation"] = (
                f"one Bernoulli(x / 255) draw per pixel, key {static_key}"
                if self.static_method == "sample"
                else "threshold: x / 255 > 0.5"
            )
            protocol["static_method"] = self.static_method
        elif self.binarization == "dynamic":
            protocol["train"] = (
                "fresh Bernoulli(x / 255) draw per example per step, key "
                "fold_in(binarize_stream, step)"
            )
            if self.binarization_version != 1:  # version 1 is recorded as before it existed
                protocol["binarization_version"] = self.binarization_version
                protocol["train"] += (
                    ": pixel x is 1 iff u < x for a byte u of jax.random.bits(key, "
                    "(ceil(n / 4),), uint32) (byte b of word w, bits 8b..8b+7, is pixel "
                    "4w + b of the flattened batch); a byte 255 is redrawn: in round r = 1, "
                    "2, ... the pixels still at 255, in order, take the bytes of "
                    f"jax.random.bits(fold_in(key, r), (ceil(n / {REDRAW_PIXELS_PER_WORD}),)"
                    ", uint32) in order"
                )
            protocol["evaluation"] = f"one Bernoulli(x / 255) draw per pixel, key {static_key}"
        if self.binarization != "none":
            protocol["binarization_seed"] = self.binarization_seed
        return protocol


def binarize_once(images: np.ndarray, method: str, seed: int, split: str) -> np.ndarray:
    """A fixed binarization of a whole split, as uint8 {0, 1}."""
    if method == "threshold":
        return (images > 127).astype(np.uint8)
    if method != "sample":
        raise ValueError(f"static binarization method {method!r}; choose one of {STATIC_METHODS}")
    key = rng.binarization_key(seed, SPLIT_IDS[split])
    probabilities = jnp.asarray(images, jnp.float32) / 255.0
    return np.asarray(draws.bernoulli(key, probabilities)).astype(np.uint8)


def dynamic_binarize(key: jax.Array, stored: jax.Array) -> jax.Array:
    """Version 1 of dynamic binarization (runs recorded before the version existed): a
    fresh ``Bernoulli(x / 255)`` of a uint8 batch, ``jax.random.bernoulli(key, x / 255)``
    (a float32 uniform per pixel), as float32."""
    probabilities = stored.astype(jnp.float32) / 255.0
    return draws.bernoulli(key, probabilities).astype(jnp.float32)


def _bytes(key: jax.Array, num_bytes: int) -> jax.Array:
    """The first ``num_bytes`` bytes of ``jax.random.bits(key, (ceil(num_bytes / 4),),
    uint32)``, as uint8: byte ``b`` of word ``w`` (bits ``8b`` to ``8b + 7``) is byte
    ``4w + b`` (what a little-endian view of the words as bytes reads)."""
    words = jax.random.bits(key, (-(-num_bytes // 4),), jnp.uint32)
    shifts = jnp.asarray([0, 8, 16, 24], jnp.uint32)
    return ((words[:, None] >> shifts) & 0xFF).astype(jnp.uint8).reshape(-1)[:num_bytes]


def dynamic_binarize_bytes(key: jax.Array, stored: jax.Array) -> jax.Array:
    """Version 2 of dynamic binarization: exactly ``Bernoulli(x / 255)`` for every uint8
    intensity ``x``, from 8 random bits per pixel (version 1, ``dynamic_binarize``,
    spends a 32-bit float uniform per pixel). Returns float32 {0, 1} of ``stored``'s shape.

    Derivation, with ``n = stored.size`` and pixel ``i`` the ``i``-th of ``stored`` in
    row-major order (its intensity ``x_i``):

    1. Round 0: ``u = bytes(key, n)``, the bytes of ``jax.random.bits(key, (ceil(n / 4),),
       uint32)``, byte ``b`` of word ``w`` (bits ``8b`` to ``8b + 7``) for pixel ``4w + b``.
       Each byte is uniform on {0, ..., 255}, the bytes independent.
    2. Round ``r = 1, 2, ...`` while some ``u_i == 255``: draw ``m = 4 * ceil(n / 512)``
       bytes ``bytes(fold_in(key, r), m)`` (one per 128 pixels; a batch of n pixels has
       n / 256 of them at 255 in expectation). The pixels with ``u_i == 255``, ranked
       0, 1, ... in row-major order, take byte ``rank`` if ``rank < m`` (the rest wait for
       the next round); a byte taken may be 255 again.
    3. Pixel ``i`` is 1 iff ``u_i < x_i``.

    Why it is exact: each pixel is offered a sequence of fresh bytes, each uniform on
    {0, ..., 255} and independent of everything drawn before it (which pixels wait, and in
    what order, depends only on earlier bytes), and keeps the first one below 255
    (rejection sampling): its final ``u_i`` is uniform on {0, ..., 254}, independent across
    pixels. Exactly ``x`` of those 255 values lie below ``x`` (0 for ``x = 0``, all 255 for
    ``x = 255``), so ``P(pixel = 1) = x / 255`` with no rounding. (A float uniform compared
    with ``x / 255`` in float32, version 1, is off by up to about 2**-23.) The loop ends with
    probability 1; a batch of 100,352 pixels (128 images of 28x28) needs redraw round 1
    almost surely, round 2 with probability about 0.78 and round 3 about 0.006, each of 196
    words against 25,088 in round 0.

    Why words split into bytes and not ``jax.random.bits(key, shape, jnp.uint8)``: with
    threefry and ``jax_threefry_partitionable`` (JAX's default, recorded in the manifest),
    a uint8 draw still hashes one counter per element and keeps 8 of its bits, as much
    work as 32 bits per pixel; a uint32 word per 4 pixels hashes a quarter as many.
    """
    if stored.dtype != jnp.uint8:
        raise ValueError(f"version 2 binarizes uint8 intensities; got {stored.dtype}")
    n = stored.size
    m = 4 * max(1, -(-n // REDRAW_PIXELS_PER_WORD))
    u = redraw_compacted(key, _bytes(key, n), m, REDRAW_CAPACITY * m)
    return (u < stored.reshape(-1)).reshape(stored.shape).astype(jnp.float32)


def _take(fresh: jax.Array, m: int, u: jax.Array, waiting: jax.Array) -> jax.Array:
    """One redraw round on the bytes ``u``: the ``waiting`` ones (those at 255 in pixel
    order, or a subset holding all of them in order) take the round's ``m`` fresh bytes by
    rank; the rest wait."""
    rank = jax.lax.associative_scan(jnp.add, waiting.astype(jnp.int32)) - 1
    take = waiting & (rank < m)
    return jnp.where(take, fresh[jnp.clip(rank, 0, m - 1)], u)


def redraw_compacted(key: jax.Array, u: jax.Array, m: int, capacity: int) -> jax.Array:
    """Step 2 of ``dynamic_binarize_bytes`` on the round-0 bytes ``u``, with the rounds run
    on the pixels at 255 only.

    The pixels at 255 after round 0 (about ``n / 256``), gathered in pixel order into
    ``capacity`` slots, are the only ones a later round can touch: their ranks among the
    waiting ones are their ranks over the whole batch, so each round takes the same bytes
    for the same pixels as the rule written over the batch. The gathering costs one prefix
    sum over the batch instead of one per round (0.92 against 1.27 ms a step for 128
    images, interleaved, here). When more than ``capacity`` pixels wait (never seen at
    ``2 m``, twice a round's bytes), the rounds run over the whole batch. One random draw a
    round either way."""
    waiting = u == 255
    counts = jax.lax.associative_scan(jnp.add, waiting.astype(jnp.int32))  # inclusive
    overflow = counts[-1] > capacity
    # Slot j holds the pixel whose count first reaches j + 1 (n, dropped below, if none).
    slots = jnp.searchsorted(counts, jnp.arange(1, capacity + 1, dtype=jnp.int32), side="left")
    in_use = jnp.arange(capacity) < counts[-1]

    def pending(carry):
        _, u, v = carry
        return jax.lax.cond(
            overflow, lambda: jnp.any(u == 255), lambda: jnp.any((v == 255) & in_use)
        )

    def round_r(carry):
        r, u, v = carry
        fresh = _bytes(jax.random.fold_in(key, r + 1), m)
        u, v = jax.lax.cond(
            overflow,
            lambda: (_take(fresh, m, u, u == 255), v),
            lambda: (u, _take(fresh, m, v, (v == 255) & in_use)),
        )
        return r + 1, u, v

    start = (jnp.uint32(0), u, jnp.full((capacity,), 255, jnp.uint8))
    _, u, v = jax.lax.while_loop(pending, round_r, start)
    return jax.lax.cond(overflow, lambda: u, lambda: u.at[slots].set(v, mode="drop"))


def make_preprocessing(data_config, likelihood: str, already_binary: bool) -> Preprocessing:
    return Preprocessing(
        kind=likelihoods.get_spec(likelihood).data_kind,
        binarization=data_config.binarization,
        static_method=data_config.static_binarization,
        binarization_seed=int(data_config.binarization_seed),
        already_binary=already_binary,
        binarization_version=int(data_config.binarization_version),
    )
