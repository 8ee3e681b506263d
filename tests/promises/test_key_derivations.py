"""Every documented key derivation, rebuilt with jax.random and compared with what ran.

"Same seed, same numbers" passes for any fixed key, right or wrong. These tests rebuild
each random value from the formula README.md ("Keys", "Data", "Evaluation") documents,
with ``jax.random`` directly and the ids written out below, and compare it with what the
code used. Each also computes the neighbouring derivation (another stream id, counter,
split id, purpose id or example index) and checks that it gives different numbers, so the
comparison can tell a right key from a wrong one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import vae_jax
from experiments.configs import tiny
from tests.helpers.idx_data import synthetic_images
from vae_jax import adapter, data
from vae_jax.data import preprocess
from vae_jax.evaluation import bounds, diagnostics, figures
from vae_jax.evaluation.evaluate_run import Evaluator
from vae_jax.run.metrics_log import read_metrics
from vae_jax.single_run import train_and_evaluate

fold_in = jax.random.fold_in

# The documented ids, written out (not imported) so that a renumbering is caught too.
STREAM_IDS = {"init": 0, "data": 1, "binarize": 2, "latent": 3, "eval": 4, "generate": 5}
EVAL_PURPOSE_IDS = {
    "validation": 0,
    "test_elbo": 1,
    "test_iwae": 2,
    "mutual_information": 3,
    "figures": 4,
}
SPLIT_IDS = {"train": 0, "test": 1, "validation": 2}
# The data's own keys: fold_in(key(seed), tag), tags above every stream id.
DATA_KEY_TAGS = {"binarization": 1000, "split": 1001}

NUM_EPOCHS = 2
NUM_TRAIN, NUM_TEST = 600, 100  # what conftest's `tiny_data_dir` generates
K, CHUNK = 16, 8  # importance samples of the evaluation tests, and their chunk


def key_bits(key) -> np.ndarray:
    return np.asarray(jax.random.key_data(key))


def streams_of(seed: int) -> dict:
    """The root ``key(seed)`` and ``fold_in(root, id)`` for every documented stream."""
    root = jax.random.key(seed)
    return {"root": root} | {name: fold_in(root, i) for name, i in STREAM_IDS.items()}


def record_epoch_inputs(dataset, config, num_epochs: int, *image_sets) -> list[list[dict]]:
    """What the compiled training epoch hands its train step, for each array of stored
    training images in ``image_sets``: consecutive epochs from step 0, epoch ``e`` called
    as the loop calls it (with ``e - 1``); per epoch, arrays with one row per step of
    ``x`` (the batch as the model reads it), ``mask`` and ``key`` (the raw data of the
    step's latent key).

    The one place this file uses internal training APIs (a restructure will rename them).
    """
    from vae_jax.core import rng
    from vae_jax.training import step as step_lib

    def recording_step(state, batch, key):
        record = {"x": batch.x, "mask": batch.mask, "key": jax.random.key_data(key)}
        return state._replace(step=state.step + 1), record

    num_examples = int(image_sets[0].shape[0])
    epoch_fn = jax.jit(
        step_lib.make_train_epoch(
            recording_step, dataset.preprocessing, num_examples, config.training.batch_size
        )
    )
    streams = rng.make_streams(config.seed)
    results = []
    for images in image_sets:
        state = step_lib.TrainState(jnp.zeros((), jnp.int32), None, None)
        epochs = []
        for epoch in range(1, num_epochs + 1):
            state, record = epoch_fn(state, streams, images, jnp.int32(epoch - 1))
            epochs.append(jax.device_get(record))
        results.append(epochs)
    return results


# --- the documented training derivation and its neighbours ---------------------------


class Derivation(NamedTuple):
    """Keys of a training run: initialization, and for epoch ``e`` (1-based, as in
    metrics.jsonl) and the step with global number ``t``, the ``j``-th of its epoch."""

    init: Callable  # streams -> key of the parameter initialization
    shuffle: Callable  # (streams, e) -> key of the epoch's permutation
    binarize: Callable  # (streams, e, t, j) -> key of the dynamic binarization
    latent: Callable  # (streams, e, t, j) -> key of the latent draws


DOCUMENTED = Derivation(
    init=lambda s: s["init"],
    shuffle=lambda s, e: fold_in(s["data"], e - 1),
    binarize=lambda s, e, t, j: fold_in(s["binarize"], t),
    latent=lambda s, e, t, j: fold_in(s["latent"], t),
)
# One key off each: the inputs of the steps (batches and latent keys) differ.
STEP_NEIGHBOURS = {
    "shuffle_with_epoch_not_epoch_minus_1": DOCUMENTED._replace(
        shuffle=lambda s, e: fold_in(s["data"], e)
    ),
    "shuffle_from_binarize_stream": DOCUMENTED._replace(
        shuffle=lambda s, e: fold_in(s["binarize"], e - 1)
    ),
    "binarize_at_step_plus_1": DOCUMENTED._replace(
        binarize=lambda s, e, t, j: fold_in(s["binarize"], t + 1)
    ),
    "binarize_at_index_within_epoch": DOCUMENTED._replace(
        binarize=lambda s, e, t, j: fold_in(s["binarize"], j)
    ),
    "binarize_with_latent_stream": DOCUMENTED._replace(
        binarize=lambda s, e, t, j: fold_in(s["latent"], t)
    ),
    "latent_from_binarize_stream": DOCUMENTED._replace(
        latent=lambda s, e, t, j: fold_in(s["binarize"], t)
    ),
    "latent_from_eval_stream": DOCUMENTED._replace(latent=lambda s, e, t, j: fold_in(s["eval"], t)),
    "latent_at_epoch": DOCUMENTED._replace(latent=lambda s, e, t, j: fold_in(s["latent"], e)),
    "latent_at_step_plus_1": DOCUMENTED._replace(
        latent=lambda s, e, t, j: fold_in(s["latent"], t + 1)
    ),
    "latent_at_index_within_epoch": DOCUMENTED._replace(
        latent=lambda s, e, t, j: fold_in(s["latent"], j)
    ),
}
TRAINING_NEIGHBOURS = {
    **STEP_NEIGHBOURS,
    "init_with_the_root_key": DOCUMENTED._replace(init=lambda s: s["root"]),
    "init_from_latent_stream": DOCUMENTED._replace(init=lambda s: s["latent"]),
}


def derived_epochs(derivation: Derivation, seed: int, num_examples: int, batch_size: int):
    """Per epoch: batch indices (the permutation in order, the last batch padded), mask,
    and the raw data of each step's binarization and latent keys."""
    streams = streams_of(seed)
    num_batches = -(-num_examples // batch_size)
    padding = num_batches * batch_size - num_examples
    mask = (np.arange(num_batches * batch_size) < num_examples).reshape(num_batches, batch_size)
    epochs = []
    for e in range(1, NUM_EPOCHS + 1):
        order = np.asarray(jax.random.permutation(derivation.shuffle(streams, e), num_examples))
        indices = np.concatenate([order, np.zeros(padding, order.dtype)])
        steps = [((e - 1) * num_batches + j, j) for j in range(num_batches)]
        epochs.append(
            {
                "indices": indices.reshape(num_batches, batch_size),
                "mask": mask,
                "binarize": np.stack([key_bits(derivation.binarize(streams, e, t, j))
                                      for t, j in steps]),
                "latent": np.stack([key_bits(derivation.latent(streams, e, t, j))
                                    for t, j in steps]),
            }
        )  # fmt: skip
    return epochs


@jax.jit
def dynamic_binarization(key_data, stored):
    """README: a fresh Bernoulli(x / 255) draw per pixel from the step's binarize key
    (version 1: ``bernoulli(key, x / 255)``, a float uniform per pixel)."""
    probabilities = stored.astype(jnp.float32) / 255.0
    draws = jax.random.bernoulli(jax.random.wrap_key_data(key_data), probabilities)
    return draws.astype(jnp.float32)


# README, version 2: in each redraw round, ceil(n / 512) words of 32 bits (4 bytes each).
PIXELS_PER_REDRAW_WORD = 512


def documented_bytes(key, num_bytes: int, byte_order: str = "<") -> np.ndarray:
    """The bytes of jax.random.bits(key, (ceil(num_bytes / 4),), uint32), byte b of word w
    (bits 8b..8b+7: a little-endian view of the words) being byte 4w + b."""
    words = np.asarray(jax.random.bits(key, (-(-num_bytes // 4),), jnp.uint32))
    return words.astype(f"{byte_order}u4").view(np.uint8)[:num_bytes].copy()


def dynamic_binarization_v2(
    key,
    stored,
    *,
    redraw_key=lambda key, r: fold_in(key, r),
    own_position=False,
    byte_order="<",
    one_if=np.less,
    max_rounds=64,
):
    """README, version 2, rebuilt with numpy: u = the bytes of the step's key (8 bits per
    pixel, row-major); while some u_i is 255, round r = 1, 2, ... draws m = 4 *
    ceil(n / 512) bytes with fold_in(key, r) and the first m pixels still at 255, in
    row-major order, take them in order; pixel i is 1 iff u_i < x_i. The keywords build
    the neighbouring derivations; None if its loop would not end."""
    key = jax.random.wrap_key_data(key) if isinstance(key, np.ndarray) else key
    x = np.asarray(stored).reshape(-1)
    n = x.size
    m = 4 * -(-n // PIXELS_PER_REDRAW_WORD)
    u = documented_bytes(key, n, byte_order)
    for r in range(1, max_rounds + 1):
        if not (u == 255).any():
            break
        waiting = np.flatnonzero(u == 255)
        if own_position:  # every pixel at 255 takes its own byte of a full-size draw
            u[waiting] = documented_bytes(redraw_key(key, r), n, byte_order)[waiting]
        else:
            waiting = waiting[:m]
            u[waiting] = documented_bytes(redraw_key(key, r), m, byte_order)[: waiting.size]
    else:
        return None
    return one_if(u, x).reshape(np.shape(stored)).astype(np.float32)


def partial_v2(**neighbouring):
    """``dynamic_binarization_v2`` with a neighbouring rule."""
    return functools.partial(dynamic_binarization_v2, **neighbouring)


# --- fixtures: the source arrays, one trained run --------------------------------------


@pytest.fixture(scope="module")
def source():
    """The generated source arrays (conftest writes train with seed 0, test with seed 1),
    as (N, 28, 28, 1) uint8 images and labels."""
    train_images, train_labels = synthetic_images(NUM_TRAIN, 0)
    test_images, test_labels = synthetic_images(NUM_TEST, 1)
    return {
        "train": (train_images[..., None], train_labels),
        "test": (test_images[..., None], test_labels),
    }


@pytest.fixture(scope="module")
def config(tiny_data_dir):
    """The tiny config, two epochs, dynamic binarization version 1 (a float uniform per
    pixel: the draw of every run recorded before versions existed); version 2, the draw of
    new runs, has its own fixtures and tests below."""
    config = tiny.get_config()
    config.data.data_dir = tiny_data_dir
    config.training.num_epochs = NUM_EPOCHS
    config.training.checkpoint_every_epochs = NUM_EPOCHS  # one save: faster, same numbers
    config.data.binarization_version = 1
    return config


@pytest.fixture(scope="module")
def config_v2(config):
    """``config`` with version 2 of dynamic binarization, as a new run gets it."""
    config_v2 = config.copy_and_resolve_references()
    config_v2.data.binarization_version = 2
    assert config_v2.data.binarization_version == tiny.get_config().data.binarization_version
    return config_v2


def _trained(config, workdir) -> dict:
    """``config`` trained in ``workdir`` through the public entry point, loaded back."""
    train_and_evaluate(config, workdir)
    vae, params, _ = vae_jax.load_run(workdir)
    return {"vae": vae, "params": params, "metrics": read_metrics(workdir)}


@pytest.fixture(scope="module")
def run(config, tmp_path_factory):
    """The tiny config trained for two epochs."""
    return _trained(config, tmp_path_factory.mktemp("keys") / "run")


@pytest.fixture(scope="module")
def run_v2(config_v2, tmp_path_factory):
    """``run`` with version 2 of dynamic binarization."""
    return _trained(config_v2, tmp_path_factory.mktemp("keys_v2") / "run")


@pytest.fixture(scope="module")
def dataset(config):
    return data.load_dataset(config)


# --- training: replay from the documented keys -----------------------------------------

# Replay against the run, measured on CPU: parameters and per-epoch train ELBOs are
# bit-identical (difference 0.0); every neighbouring key moves some parameter by > 8e-3.
PARAMS_ATOL = 1e-6
ELBO_ATOL = 1e-4  # nats, on per-epoch train ELBOs of about -550


@pytest.fixture(scope="module")
def replay(config, source):
    """``replay(derivation) -> (params, train ELBO per epoch)``: the run's two epochs redone
    with optax and the model's pure functions, keys from ``derivation``. One compiled step
    serves every derivation (keys are arguments). ``replay(derivation, binarize)`` takes
    each step's batch from ``binarize(key_data, stored)`` (computed outside the step)
    instead of version 1's draw inside it."""
    # The replay builds what base.py documents for these settings: constant-rate Adam,
    # no clipping, loss = -(ELBO averaged over the unmasked examples), beta = 1, one z.
    settings = (config.optimizer.name, config.optimizer.schedule, config.optimizer.grad_clip_norm)
    assert settings == ("adam", "constant", 0)
    objective = config.objective
    settings = (objective.name, objective.beta, objective.num_samples, objective.kl)
    assert settings == ("elbo", 1.0, 1, "analytic")
    assert (objective.kl_warmup_steps, objective.free_bits) == (0, 0)
    vae = vae_jax.vae_from_config(config, (28, 28, 1))
    # A run passes its hyperparameters to the compiled epoch as float32 inputs (README,
    # "Hyperparameter grids"): the replay's step takes them the same way.
    adam_settings = tuple(
        jnp.float32(config.optimizer[name]) for name in ("learning_rate", "b1", "b2", "eps")
    )

    def make_optimizer(learning_rate, b1, b2, eps):
        return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)

    optimizer = make_optimizer(*adam_settings)  # its init does not depend on the values
    # The training split as documented (dynamic: intensities), from the source arrays.
    carved = first_nine_tenths(split_permutation(config.data.split_seed))
    images = jnp.asarray(source["train"][0][carved])

    def loss(params, x, mask, latent_key):
        elbo = vae.elbo(params, latent_key, x, num_samples=1, kl="analytic", beta=1.0).elbo
        weights = mask.astype(jnp.float32)
        mean_elbo = jnp.sum(elbo * weights) / jnp.sum(weights)
        return -mean_elbo, mean_elbo

    @jax.jit
    def step_on(params, opt_state, x, mask, latent_key, settings):
        latent_key = jax.random.wrap_key_data(latent_key)
        (_, elbo), grads = jax.value_and_grad(loss, has_aux=True)(params, x, mask, latent_key)
        updates, opt_state = make_optimizer(*settings).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, elbo

    @jax.jit
    def step(params, opt_state, stored, mask, binarize_key, latent_key, settings):
        x = dynamic_binarization(binarize_key, stored)
        return step_on(params, opt_state, x, mask, latent_key, settings)

    init = jax.jit(vae.init)

    def replay_with(derivation: Derivation, binarize=None):
        params = init(derivation.init(streams_of(config.seed)))
        opt_state = optimizer.init(params)
        epochs = derived_epochs(derivation, config.seed, len(images), config.training.batch_size)
        epoch_elbos = []
        for epoch in epochs:
            step_elbos = []
            for j, indices in enumerate(epoch["indices"]):
                if binarize is None:
                    params, opt_state, elbo = step(
                        params, opt_state, images[indices], epoch["mask"][j],
                        epoch["binarize"][j], epoch["latent"][j], adam_settings,
                    )  # fmt: skip
                else:
                    x = binarize(epoch["binarize"][j], np.asarray(images[indices]))
                    params, opt_state, elbo = step_on(
                        params, opt_state, x, epoch["mask"][j], epoch["latent"][j],
                        adam_settings,
                    )  # fmt: skip
                step_elbos.append(elbo)
            counts = epoch["mask"].sum(axis=1)
            step_elbos = np.asarray(jax.device_get(step_elbos), np.float64)
            epoch_elbos.append(float(np.sum(step_elbos * counts) / counts.sum()))
        return params, epoch_elbos

    return replay_with


def max_difference(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.slow
def test_training_replays_from_the_documented_keys(run, replay):
    """init = fold_in(root, 0); epoch e shuffles with fold_in(data, e - 1); step t
    binarizes with fold_in(binarize, t) and draws z with fold_in(latent, t): replaying two
    epochs from these keys gives the run's parameters and its recorded train ELBOs."""
    params, epoch_elbos = replay(DOCUMENTED)
    assert jax.tree.structure(params) == jax.tree.structure(run["params"])
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(run["params"]), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=PARAMS_ATOL)
    recorded = [record["train/elbo"] for record in run["metrics"]]
    np.testing.assert_allclose(epoch_elbos, recorded, rtol=0, atol=ELBO_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("neighbour", list(TRAINING_NEIGHBOURS))
def test_training_replay_with_a_neighbouring_key_differs(run, replay, neighbour):
    """The replay can tell: one key off (another stream or counter) and the parameters end
    far outside the tolerance the documented replay meets."""
    params, _ = replay(TRAINING_NEIGHBOURS[neighbour])
    assert max_difference(params, run["params"]) > 1000 * PARAMS_ATOL


@pytest.mark.slow
def test_training_replays_version_2_from_the_documented_keys(run_v2, replay):
    """A new run (version 2): the same keys, each step's batch drawn from fold_in(binarize,
    t) by version 2's rule (8 random bits per pixel, 255 redrawn), rebuilt in numpy: the
    replay gives the run's parameters and recorded train ELBOs; version 1's draw does not."""
    params, epoch_elbos = replay(DOCUMENTED, dynamic_binarization_v2)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(run_v2["params"]), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=PARAMS_ATOL)
    recorded = [record["train/elbo"] for record in run_v2["metrics"]]
    np.testing.assert_allclose(epoch_elbos, recorded, rtol=0, atol=ELBO_ATOL)
    version_1, _ = replay(DOCUMENTED)
    assert max_difference(version_1, run_v2["params"]) > 1000 * PARAMS_ATOL


# --- training: what the compiled epoch hands the step ----------------------------------


def index_images(num: int) -> np.ndarray:
    """Images whose first pixels spell their own index in binary as 0 or 255, which
    dynamic binarization keeps exactly (Bernoulli(0) = 0, Bernoulli(1) = 1)."""
    images = np.zeros((num, 28, 28, 1), np.uint8)
    images[:, 0, :12, 0] = 255 * ((np.arange(num)[:, None] >> np.arange(12)) & 1)
    return images


def decode_indices(x: np.ndarray) -> np.ndarray:
    return np.round(x[..., 0, :12, 0]).astype(np.int64) @ (1 << np.arange(12))


@pytest.fixture(scope="module")
def recorded_inputs(config, dataset):
    images = dataset.train.images
    real, indexed = record_epoch_inputs(
        dataset, config, NUM_EPOCHS, images, jnp.asarray(index_images(len(images)))
    )
    derived = derived_epochs(DOCUMENTED, config.seed, len(images), config.training.batch_size)
    return {"real": real, "indexed": indexed, "derived": derived}


def test_epoch_visits_the_documented_permutation_once_padding_masked(recorded_inputs):
    """Epoch e visits permutation(fold_in(data, e - 1), n) in order, every example once;
    only the tail of the last batch is padding, and it is masked."""
    for epoch, recorded, derived in zip(
        (1, 2), recorded_inputs["indexed"], recorded_inputs["derived"], strict=True
    ):
        visited, mask = decode_indices(recorded["x"]), recorded["mask"]
        np.testing.assert_array_equal(mask, derived["mask"], err_msg=f"epoch {epoch}")
        assert mask[:-1].all()
        assert not mask[-1].all()  # 540 examples in batches of 50: the last is padded
        np.testing.assert_array_equal(visited[mask], derived["indices"][derived["mask"]])
        np.testing.assert_array_equal(np.sort(visited[mask]), np.arange(mask.sum()))


def test_epoch_binarizes_and_draws_with_the_global_step(recorded_inputs, dataset):
    """Step t (counted over the run: epoch 2 starts at t = 11, not 0) reads Bernoulli(x / 255)
    drawn with fold_in(binarize, t) and gets the latent key fold_in(latent, t)."""
    images = dataset.train.images
    for recorded, derived in zip(recorded_inputs["real"], recorded_inputs["derived"], strict=True):
        np.testing.assert_array_equal(recorded["key"], derived["latent"])
        for j, indices in enumerate(derived["indices"]):
            expected = np.asarray(dynamic_binarization(derived["binarize"][j], images[indices]))
            valid = derived["mask"][j]
            np.testing.assert_array_equal(recorded["x"][j][valid], expected[valid])


@pytest.mark.parametrize("neighbour", list(STEP_NEIGHBOURS))
def test_epoch_inputs_differ_from_a_neighbouring_derivation(
    recorded_inputs, config, dataset, neighbour
):
    """The check above can tell: the inputs under a neighbouring derivation differ."""
    images, batch_size = dataset.train.images, config.training.batch_size
    derivation = STEP_NEIGHBOURS[neighbour]
    differs = False
    for recorded, derived in zip(
        recorded_inputs["real"],
        derived_epochs(derivation, config.seed, len(images), batch_size),
        strict=True,
    ):
        differs |= not np.array_equal(recorded["key"], derived["latent"])
        for j, indices in enumerate(derived["indices"]):
            expected = np.asarray(dynamic_binarization(derived["binarize"][j], images[indices]))
            valid = derived["mask"][j]
            differs |= not np.array_equal(recorded["x"][j][valid], expected[valid])
    assert differs


# --- training: version 2 of dynamic binarization (new runs) ----------------------------


@pytest.fixture(scope="module")
def recorded_inputs_v2(config_v2, dataset):
    """What the compiled epoch hands the step under version 2, on the real training set."""
    preprocessing = dataclasses.replace(dataset.preprocessing, binarization_version=2)
    dataset_v2 = dataclasses.replace(dataset, preprocessing=preprocessing)
    (real,) = record_epoch_inputs(dataset_v2, config_v2, NUM_EPOCHS, dataset.train.images)
    return real


def test_epoch_binarizes_version_2_with_the_global_step(
    recorded_inputs_v2, recorded_inputs, dataset
):
    """Step t binarizes by version 2's rule from fold_in(binarize, t) (the global step), the
    batches and latent keys being those of version 1."""
    images = dataset.train.images
    for recorded, derived in zip(recorded_inputs_v2, recorded_inputs["derived"], strict=True):
        np.testing.assert_array_equal(recorded["key"], derived["latent"])
        for j, indices in enumerate(derived["indices"]):
            expected = dynamic_binarization_v2(derived["binarize"][j], np.asarray(images[indices]))
            valid = derived["mask"][j]
            np.testing.assert_array_equal(recorded["x"][j][valid], expected[valid])


def _version_1_draw(key_data, stored):
    return np.asarray(dynamic_binarization(key_data, stored))


V2_STEP_NEIGHBOURS = {
    **{
        name: (derivation, dynamic_binarization_v2)
        for name, derivation in STEP_NEIGHBOURS.items()
        if name.startswith("binarize_")
    },
    "version_1_draw": (DOCUMENTED, _version_1_draw),
}


@pytest.mark.parametrize("neighbour", list(V2_STEP_NEIGHBOURS))
def test_version_2_epoch_inputs_differ_from_a_neighbouring_derivation(
    recorded_inputs_v2, config, dataset, neighbour
):
    """The check above can tell: another binarization key, or version 1's draw, differs."""
    images, batch_size = dataset.train.images, config.training.batch_size
    derivation, binarize = V2_STEP_NEIGHBOURS[neighbour]
    differs = False
    for recorded, derived in zip(
        recorded_inputs_v2,
        derived_epochs(derivation, config.seed, len(images), batch_size),
        strict=True,
    ):
        for j, indices in enumerate(derived["indices"]):
            expected = binarize(derived["binarize"][j], np.asarray(images[indices]))
            valid = derived["mask"][j]
            differs |= not np.array_equal(recorded["x"][j][valid], expected[valid])
    assert differs


def _random_intensities(num_pixels: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, num_pixels, dtype=np.uint8)


@functools.cache
def redraw_cases() -> dict:
    """Keys and batches on which version 2 redraws: ``many`` (16 images of random
    intensities: about 49 pixels at 255 in round 0, m = 100) and ``more_than_m`` (512
    pixels, m = 4, with the first key fold_in(key(0), i) that has more than 4 pixels at 255
    in round 0, so that some wait for a second redraw round)."""
    cases = {
        "many": (jax.random.key(2), _random_intensities(16 * 28 * 28, 0).reshape(16, 28, 28, 1))
    }
    for i in range(1000):
        key = fold_in(jax.random.key(0), i)
        if (documented_bytes(key, 512) == 255).sum() > 4:
            cases["more_than_m"] = (key, _random_intensities(512, 1))
            break
    return cases


binarize_v2 = jax.jit(preprocess.dynamic_binarize_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["many", "more_than_m"])
def test_version_2_redraws_by_the_documented_rule(case):
    """With pixels at byte 255 in round 0 (more than a redraw round holds, in
    ``more_than_m``), the code's bits equal the README's rule rebuilt in numpy, bit for bit."""
    key, stored = redraw_cases()[case]
    n = stored.size
    m = 4 * -(-n // PIXELS_PER_REDRAW_WORD)
    waiting = int((documented_bytes(key, n) == 255).sum())
    assert waiting > (m if case == "more_than_m" else 0)
    got = np.asarray(binarize_v2(key, jnp.asarray(stored)))
    np.testing.assert_array_equal(got, dynamic_binarization_v2(key, stored))
    # ... and through the training path (Preprocessing.train_input), not compiled.
    preprocessing = preprocess.Preprocessing(
        kind="binary", binarization="dynamic", binarization_version=2
    )
    np.testing.assert_array_equal(preprocessing.train_input(jnp.asarray(stored), key), got)


def _byte_255_kept(key, stored):
    """No redraw: u in 0..255 and P(1) = k / 256."""
    u = documented_bytes(key, stored.size)
    return (u < stored.reshape(-1)).reshape(stored.shape).astype(np.float32)


REDRAW_NEIGHBOURS = {
    "redraw_with_the_step_key_itself": partial_v2(redraw_key=lambda key, r: key),
    "redraw_round_r_with_fold_in_r_plus_1": partial_v2(
        redraw_key=lambda key, r: fold_in(key, r + 1)
    ),
    "redraw_round_r_with_fold_in_r_minus_1": partial_v2(
        redraw_key=lambda key, r: fold_in(key, r - 1)
    ),
    "redraw_at_each_pixel_s_own_position": partial_v2(own_position=True),
    "bytes_big_endian_in_each_word": partial_v2(byte_order=">"),
    "one_iff_u_at_most_x": partial_v2(one_if=np.less_equal),
    "byte_255_kept_not_redrawn": _byte_255_kept,
    "version_1_float_comparison": lambda key, stored: _version_1_draw(
        jax.random.key_data(key), jnp.asarray(stored)
    ),
}


@pytest.mark.parametrize("neighbour", list(REDRAW_NEIGHBOURS))
def test_version_2_differs_from_a_neighbouring_rule(neighbour):
    """The check above can tell: a neighbouring redraw key, assignment, byte order,
    comparison or version 1's float draw gives other bits (or never ends)."""
    key, stored = redraw_cases()["many"]
    got = np.asarray(binarize_v2(key, jnp.asarray(stored)))
    expected = REDRAW_NEIGHBOURS[neighbour](key, stored)
    assert expected is None or not np.array_equal(got, expected)


def _random_bits_draws(jaxpr, within: tuple[str, ...] = ()):
    """(bit_width, shape, the loops around it) of every random_bits equation, sub-jaxprs
    included; the loops are the scan and while primitives it lies within, outermost first."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "random_bits":
            yield eqn.params["bit_width"], tuple(eqn.params["shape"]), within
        loop = (eqn.primitive.name,) if eqn.primitive.name in ("scan", "while") else ()
        for sub in jax.core.jaxprs_in_params(eqn.params):
            yield from _random_bits_draws(sub, within + loop)


@pytest.mark.slow
@pytest.mark.parametrize("version", [1, 2])
def test_a_training_epoch_draws_the_documented_number_of_random_bits(config, dataset, version):
    """The jaxpr of a run's epoch (the real objective and optimizer): each step (the scan's
    body) of version 2 draws 8 random bits per pixel of the batch (n / 4 words of 32 bits)
    and, inside the redraw loop only, ceil(n / 512) words a round; version 1 draws 32 bits
    per pixel. The latent draw is the step's only other one, the epoch's permutation the
    only draw outside the steps."""
    from vae_jax import hyperparameters
    from vae_jax.core import rng
    from vae_jax.train_state import create_train_state
    from vae_jax.training.trainer import epoch_with_traced_hyperparameters, trainer_from_config

    config = config.copy_and_resolve_references()
    config.data.binarization_version = version
    preprocessing = dataclasses.replace(dataset.preprocessing, binarization_version=version)
    images = dataset.train.images
    image_shape = tuple(images.shape[1:])
    trainer = trainer_from_config(config, image_shape, preprocessing, len(images))
    streams = rng.make_streams(config.seed)
    state = create_train_state(trainer.vae, trainer.optimizer, streams.init)
    epoch = epoch_with_traced_hyperparameters(config, image_shape, preprocessing, len(images))
    traced = hyperparameters.traced_values(config)
    jaxpr = jax.make_jaxpr(epoch)(state, streams, images, jnp.int32(0), traced).jaxpr
    batch_size = config.training.batch_size
    n = batch_size * math.prod(image_shape)  # pixels of a batch
    step = ("scan",)
    latent = (32, (batch_size * config.model.latent_dim,), step)
    if version == 2:
        redraw = (32, (-(-n // PIXELS_PER_REDRAW_WORD),), (*step, "while"))
        binarization = [(32, (n // 4,), step), redraw]
    else:
        binarization = [(32, (n,), step)]
    draws = list(_random_bits_draws(jaxpr))
    assert sorted(d for d in draws if d[2]) == sorted([*binarization, latent])
    assert [d for d in draws if not d[2]] == [(32, (len(images),), ())]  # the permutation
    bits_before_any_redraw = sum(
        w * math.prod(shape) for w, shape, at in binarization if at == step
    )
    assert bits_before_any_redraw == (8 if version == 2 else 32) * n


# --- data: validation and test splits ---------------------------------------------------

# Distinct seeds, so that a split drawn with the wrong one of them shows.
RUN_SEED, SPLIT_SEED, BINARIZATION_SEED = 3, 5, 7
NUM_VALIDATION = 60  # validation_fraction 0.1 of 600


@pytest.fixture(scope="module")
def loaded_splits(tiny_data_dir):
    """``load_dataset`` under both keyed binarization protocols, with distinct seeds."""
    datasets = {}
    for binarization in ("dynamic", "static"):
        config = tiny.get_config()
        config.data.data_dir = tiny_data_dir
        config.seed = RUN_SEED
        config.data.split_seed = SPLIT_SEED
        config.data.binarization_seed = BINARIZATION_SEED
        config.data.binarization = binarization
        assert config.data.static_binarization == "sample"
        assert config.data.validation_fraction == 0.1
        assert not config.data.validation_split
        datasets[binarization] = data.load_dataset(config)
    return datasets


def binarization_key(split_id: int, seed: int = BINARIZATION_SEED, tag: int | None = None):
    """fold_in(fold_in(key(seed), tag), split_id), the binarization tag unless told;
    ``tag=-1``: the former fold_in(key(seed), split_id), without a tag."""
    root = jax.random.key(seed)
    tag = DATA_KEY_TAGS["binarization"] if tag is None else tag
    return fold_in(root if tag == -1 else fold_in(root, tag), split_id)


def split_key(seed: int = SPLIT_SEED, tag: int | None = None):
    """fold_in(key(seed), tag), the split tag unless told; ``tag=-1``: key(seed) itself."""
    tag = DATA_KEY_TAGS["split"] if tag is None else tag
    return jax.random.key(seed) if tag == -1 else fold_in(jax.random.key(seed), tag)


def bernoulli_bits(split_id: int, images: np.ndarray, seed: int = BINARIZATION_SEED, tag=None):
    """One fixed Bernoulli(x / 255) draw of a whole split, key binarization_key(...)."""
    probabilities = jnp.asarray(images, jnp.float32) / 255.0
    key = binarization_key(split_id, seed, tag)
    return np.asarray(jax.random.bernoulli(key, probabilities)).astype(np.uint8)


def split_permutation(seed: int = SPLIT_SEED, tag: int | None = None) -> np.ndarray:
    return np.asarray(jax.random.permutation(split_key(seed, tag), NUM_TRAIN))


def last_tenth(permutation: np.ndarray) -> np.ndarray:
    return np.sort(permutation[NUM_TRAIN - NUM_VALIDATION :])


def first_nine_tenths(permutation: np.ndarray) -> np.ndarray:
    return np.sort(permutation[: NUM_TRAIN - NUM_VALIDATION])


def documented_splits(source, binarization: str) -> dict:
    """README "Data": validation is the last 10% of train after
    permutation(fold_in(key(split_seed), 1001), n), indices sorted. Binarized once with
    fold_in(fold_in(key(binarization_seed), 1000), split_id): validation and test
    (dynamic), every split (static); the carved splits as part of the source train split
    (binarized, then carved)."""
    images, labels = source["train"]
    test_images, test_labels = source["test"]
    train = first_nine_tenths(split_permutation())
    validation = last_tenth(split_permutation())
    train_bits = bernoulli_bits(SPLIT_IDS["train"], images)
    return {
        "train": (images[train] if binarization == "dynamic" else train_bits[train], labels[train]),
        "validation": (train_bits[validation], labels[validation]),
        "test": (bernoulli_bits(SPLIT_IDS["test"], test_images), test_labels),
    }


@pytest.mark.parametrize("binarization", ["dynamic", "static"])
def test_splits_are_carved_and_binarized_with_the_documented_keys(
    loaded_splits, source, binarization
):
    """Every split, pixels and labels, equals its recomputation from the source arrays."""
    dataset = loaded_splits[binarization]
    for name, (images, labels) in documented_splits(source, binarization).items():
        split = getattr(dataset, name)
        np.testing.assert_array_equal(np.asarray(split.images), images, err_msg=name)
        np.testing.assert_array_equal(np.asarray(split.labels), labels, err_msg=name)


SPLIT_NEIGHBOURS = {  # id -> (protocol, split, its pixels under a neighbouring rule)
    "validation_from_the_first_10_percent": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(0, train)[np.sort(split_permutation()[:60])],
    ),
    "validation_carved_with_the_run_seed": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(0, train)[last_tenth(split_permutation(RUN_SEED))],
    ),
    "validation_binarized_with_the_validation_id": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(2, train)[last_tenth(split_permutation())],
    ),
    "validation_binarized_after_carving": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(0, train[last_tenth(split_permutation())]),
    ),
    "validation_binarized_with_the_split_seed": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(0, train, SPLIT_SEED)[last_tenth(split_permutation())],
    ),
    "train_from_the_last_90_percent": (
        "dynamic", "train", lambda train, test: train[np.sort(split_permutation()[60:])],
    ),
    "test_binarized_with_the_train_id": (
        "dynamic", "test", lambda train, test: bernoulli_bits(0, test),
    ),
    "test_binarized_with_the_run_seed": (
        "dynamic", "test", lambda train, test: bernoulli_bits(1, test, RUN_SEED),
    ),
    "static_test_binarized_with_the_train_id": (
        "static", "test", lambda train, test: bernoulli_bits(0, test),
    ),
    "validation_carved_with_the_untagged_split_seed_key": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(0, train)[last_tenth(split_permutation(tag=-1))],
    ),
    "validation_carved_with_the_binarization_tag": (
        "dynamic", "validation",
        lambda train, test: bernoulli_bits(0, train)[last_tenth(split_permutation(tag=1000))],
    ),
    "test_binarized_with_the_untagged_key": (
        "dynamic", "test", lambda train, test: bernoulli_bits(1, test, tag=-1),
    ),
    "test_binarized_with_the_split_tag": (
        "dynamic", "test", lambda train, test: bernoulli_bits(1, test, tag=1001),
    ),
    "static_train_binarized_with_the_untagged_key": (
        "static", "train",
        lambda train, test: bernoulli_bits(0, train, tag=-1)[
            first_nine_tenths(split_permutation())
        ],
    ),
    "static_train_binarized_with_the_test_id": (
        "static", "train",
        lambda train, test: bernoulli_bits(1, train)[first_nine_tenths(split_permutation())],
    ),
}  # fmt: skip


@pytest.mark.parametrize("neighbour", list(SPLIT_NEIGHBOURS))
def test_splits_differ_from_a_neighbouring_rule(loaded_splits, source, neighbour):
    """The check above can tell: a neighbouring carving or binarization key gives other
    pixels."""
    binarization, split, rule = SPLIT_NEIGHBOURS[neighbour]
    loaded = np.asarray(getattr(loaded_splits[binarization], split).images)
    assert not np.array_equal(loaded, rule(source["train"][0], source["test"][0]))


# --- data keys and run keys never coincide ---------------------------------------------

SEEDS = range(5)
NUM_STEPS = 4  # per-step keys fold_in(stream, t) for t < NUM_STEPS


def run_keys(seed: int) -> dict[str, np.ndarray]:
    """Every key a run with this seed names: its root, the streams, their first per-step
    keys and the eval stream's purposes, by their documented derivations."""
    streams = streams_of(seed)
    keys = {f"seed {seed} {name}": key_bits(key) for name, key in streams.items()}
    for name in STREAM_IDS:
        for t in range(NUM_STEPS):
            keys[f"seed {seed} {name} step {t}"] = key_bits(fold_in(streams[name], t))
    for purpose, purpose_id in EVAL_PURPOSE_IDS.items():
        keys[f"seed {seed} eval {purpose}"] = key_bits(fold_in(streams["eval"], purpose_id))
    return keys


def data_keys(seed: int, tag: int | None = None) -> dict[str, np.ndarray]:
    """The data's keys with this seed as binarization and split seed: each split's fixed
    binarization, the split key and the two keys its permutation splits it into."""
    keys = {
        f"seed {seed} binarization {split}": key_bits(binarization_key(i, seed, tag))
        for split, i in SPLIT_IDS.items()
    }
    split = split_key(seed, -1 if tag == -1 else None)
    keys[f"seed {seed} split"] = key_bits(split)
    for i, child in enumerate(jax.random.split(split)):
        keys[f"seed {seed} split, permutation key {i}"] = key_bits(child)
    return keys


def shared_keys(first: dict, second: dict) -> list[tuple[str, str]]:
    """Pairs of names, one from each, whose keys have the same bits."""
    by_bits = {bits.tobytes(): name for name, bits in second.items()}
    return [(name, by_bits[b.tobytes()]) for name, b in first.items() if b.tobytes() in by_bits]


def keys_the_data_code_draws_with(seed: int) -> dict[str, np.ndarray]:
    """The keys ``preprocess.binarize_once`` and ``pipeline.validation_rule`` (what
    ``load_dataset`` calls) hand jax.random, with this seed as binarization and split seed,
    named as in ``data_keys``."""
    drawn = []
    bernoulli, permutation = jax.random.bernoulli, jax.random.permutation
    config = tiny.get_config()
    config.data.split_seed = seed
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jax.random, "bernoulli", lambda k, *a: drawn.append(k) or bernoulli(k, *a))
        patch.setattr(jax.random, "permutation", lambda k, n: drawn.append(k) or permutation(k, n))
        for split in SPLIT_IDS:
            data.preprocess.binarize_once(np.zeros((1, 2, 2, 1), np.uint8), "sample", seed, split)
        data.pipeline.validation_rule(config.data, NUM_TRAIN)
    names = [f"seed {seed} binarization {split}" for split in SPLIT_IDS] + [f"seed {seed} split"]
    keys = dict(zip(names, map(key_bits, drawn), strict=True))
    for i, child in enumerate(jax.random.split(drawn[-1])):
        keys[f"seed {seed} split, permutation key {i}"] = key_bits(child)
    return keys


def test_data_keys_are_no_run_key():
    """The keys the data code draws with for seeds 0-4 (fixed binarizations, the split key
    and the two keys its permutation draws from) are the documented ones, and none has the
    bits of any key of the runs with seeds 0-4 (roots, streams, per-step keys, eval
    purposes); they are distinct among themselves too."""
    runs = {name: bits for seed in SEEDS for name, bits in run_keys(seed).items()}
    datas = {}
    for seed in SEEDS:
        drawn, documented = keys_the_data_code_draws_with(seed), data_keys(seed)
        assert drawn.keys() == documented.keys()
        for name in drawn:
            np.testing.assert_array_equal(drawn[name], documented[name], err_msg=name)
        datas |= drawn
    assert shared_keys(datas, runs) == []
    assert len({bits.tobytes() for bits in datas.values()}) == len(datas)


def test_untagged_data_keys_were_run_keys():
    """The check above can tell: the former untagged keys, fold_in(key(seed), split_id) and
    key(split_seed), are the run's init, data and binarize streams and its root."""
    runs = {name: bits for seed in SEEDS for name, bits in run_keys(seed).items()}
    shared = dict(shared_keys(data_keys(0, tag=-1), runs))
    assert shared == {
        "seed 0 binarization train": "seed 0 init",
        "seed 0 binarization test": "seed 0 data",
        "seed 0 binarization validation": "seed 0 binarize",
        "seed 0 split": "seed 0 root",
        "seed 0 split, permutation key 0": "seed 0 init",
        "seed 0 split, permutation key 1": "seed 0 data",
    }


# --- evaluation: one key per quantity and example ----------------------------------------


def purpose_key(seed: int, purpose: str):
    """fold_in(eval_stream, purpose_id)."""
    return fold_in(streams_of(seed)["eval"], EVAL_PURPOSE_IDS[purpose])


@pytest.fixture(scope="module")
def direct(run):
    """The model's bounds on one example alone, with key fold_in(purpose_key, i)."""
    vae, params = run["vae"], run["params"]
    iwae = jax.jit(
        lambda params, key, i, x: vae.iwae_bound(
            params, fold_in(key, i), x, num_samples=K, chunk_size=CHUNK
        )
    )
    elbo = jax.jit(lambda params, key, i, x: vae.elbo(params, fold_in(key, i), x).elbo)

    def per_example(bound: str, key, images, offset: int = 0) -> np.ndarray:
        """Example i of ``images`` (stored {0, 1}) bounded alone, key index i + offset."""
        function = iwae if bound == "iwae" else elbo
        x = np.asarray(images, np.float32)
        values = [function(params, key, np.uint32(i + offset), x[i]) for i in range(len(x))]
        return np.asarray(jax.device_get(values), np.float64)

    return per_example


@pytest.fixture(scope="module")
def evaluation(run, dataset, config):
    evaluator = Evaluator(
        run["vae"],
        dataset,
        **adapter.evaluator_options(config),
        num_importance_samples=K,
        chunk_size=CHUNK,
        batch_size=25,
    )
    return evaluator.evaluate(run["params"], config.seed)


def mean_and_standard_error(values: np.ndarray) -> list[float]:
    return [float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))]


def recomputed(quantity: str, purpose: str, offset: int, seed: int, run, dataset, direct):
    """The reported numbers of an evaluation quantity (see REPORTED), recomputed from the
    keys of ``purpose`` with the example index shifted by ``offset``."""
    key = purpose_key(seed, purpose)
    if quantity == "test_nll":
        mean, standard_error = mean_and_standard_error(
            direct("iwae", key, dataset.test.images, offset)
        )
        return [-mean, standard_error]
    if quantity == "test_elbo":
        return mean_and_standard_error(direct("elbo", key, dataset.test.images, offset))
    if quantity == "validation_elbo":
        return [float(direct("elbo", key, dataset.validation.images, offset).mean())]
    # One draw per example from the purpose key itself, for the whole split.
    q = run["vae"].encode(run["params"], jnp.asarray(dataset.test.images, jnp.float32))
    return [diagnostics.mutual_information(key, q.loc, q.log_scale)]


REPORTED = {  # quantity -> (the numbers the project reports, its documented purpose)
    "test_nll": (
        lambda evaluation, metrics: [
            evaluation["test_nll"]["nats"],
            evaluation["test_nll"]["standard_error"],
        ],
        "test_iwae",
    ),
    "test_elbo": (
        lambda evaluation, metrics: [
            evaluation["test_elbo"]["elbo"],
            evaluation["test_elbo"]["standard_error"],
        ],
        "test_elbo",
    ),
    "mutual_information": (
        lambda evaluation, metrics: [evaluation["latent"]["mutual_information_nats"]],
        "mutual_information",
    ),
    "validation_elbo": (lambda evaluation, metrics: [metrics[-1]["validation/elbo"]], "validation"),
}
# Per-example values are float32 of about 500 nats (1 ulp = 3e-5): a tolerance of 1e-4
# allows every example to differ by up to 3 ulps. Measured: at most 3.6e-6 between the
# reported and the recomputed numbers. A neighbouring key moves the mean by a random
# amount (0.006 to 1.8 nats over 20 shifted example indices), so test NLL and ELBO are
# compared with their standard errors too: then the smallest move measured was 0.018.
EVAL_ATOL = 1e-4
EVAL_NEIGHBOURS = {  # id -> (quantity, purpose, example index offset)
    "test_nll_with_the_test_elbo_purpose": ("test_nll", "test_elbo", 0),
    "test_nll_at_example_index_plus_1": ("test_nll", "test_iwae", 1),
    "test_elbo_with_the_test_iwae_purpose": ("test_elbo", "test_iwae", 0),
    "test_elbo_at_example_index_plus_1": ("test_elbo", "test_elbo", 1),
    "validation_with_the_test_elbo_purpose": ("validation_elbo", "test_elbo", 0),
    "validation_at_example_index_plus_1": ("validation_elbo", "validation", 1),
    "mutual_information_with_the_test_iwae_purpose": ("mutual_information", "test_iwae", 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("quantity", list(REPORTED))
def test_evaluation_numbers_use_their_purpose_and_example_keys(
    quantity, run, config, dataset, direct, evaluation
):
    """Test NLL and ELBO (the evaluator; mean and standard error) and the last epoch's
    validation ELBO (metrics.jsonl) equal their recomputation over examples i, each
    bounded alone with fold_in(fold_in(eval, purpose_id), i); the mutual information its
    estimate with fold_in(eval, purpose_id)."""
    reported, purpose = REPORTED[quantity]
    expected = recomputed(quantity, purpose, 0, config.seed, run, dataset, direct)
    np.testing.assert_allclose(
        reported(evaluation, run["metrics"]), expected, rtol=0, atol=EVAL_ATOL
    )
    assert evaluation["keys"]["purpose_ids"] == {
        name: EVAL_PURPOSE_IDS[name] for name in ("test_iwae", "test_elbo", "mutual_information")
    }


@pytest.mark.slow
@pytest.mark.parametrize("neighbour", list(EVAL_NEIGHBOURS))
def test_evaluation_numbers_differ_with_a_neighbouring_key(
    neighbour, run, config, dataset, direct, evaluation
):
    """The check above can tell: another purpose id or example index moves the numbers."""
    quantity, purpose, offset = EVAL_NEIGHBOURS[neighbour]
    neighbouring = recomputed(quantity, purpose, offset, config.seed, run, dataset, direct)
    reported = REPORTED[quantity][0](evaluation, run["metrics"])
    assert np.max(np.abs(np.subtract(reported, neighbouring))) > 10 * EVAL_ATOL


# Per-example bounds of about -500 nats, measured: 0 between a batch of 7 and the example
# alone; up to 6.1e-5 (2 float32 ulps) between batches of 100 and of 7, not tested here
# for time (one more compilation).
EXAMPLE_ATOL = 1e-3
BATCH_SIZE = 7  # 100 = 14 * 7 + 2: the last batch is padded


@pytest.fixture(scope="module")
def per_example_bounds(run, config, dataset):
    """The project's per-example test bounds with the test_iwae key, in batches of 7."""
    return bounds.importance_weighted_bounds(
        run["vae"], run["params"], purpose_key(config.seed, "test_iwae"),
        dataset.test.images, dataset.preprocessing,
        num_samples=K, chunk_size=CHUNK, batch_size=BATCH_SIZE,
    )  # fmt: skip


@pytest.mark.slow
def test_per_example_bounds_use_the_example_index_whatever_the_batch(
    per_example_bounds, config, dataset, direct
):
    """Example i, wherever it sits in a batch (of 7, the last one padded), is bounded with
    fold_in(purpose_key, i): every per-example bound equals the bound computed on that
    example alone (a batch of 1), for all 100 test examples, the last one included."""
    alone = direct("iwae", purpose_key(config.seed, "test_iwae"), dataset.test.images)
    np.testing.assert_allclose(per_example_bounds, alone, rtol=0, atol=EXAMPLE_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("neighbour", ["example_index_plus_1", "test_elbo_purpose"])
def test_per_example_bounds_differ_with_a_neighbouring_key(
    per_example_bounds, config, dataset, direct, neighbour
):
    """The check above can tell."""
    purpose, offset = ("test_iwae", 1) if neighbour == "example_index_plus_1" else ("test_elbo", 0)
    neighbouring = direct("iwae", purpose_key(config.seed, purpose), dataset.test.images, offset)
    assert np.max(np.abs(per_example_bounds - neighbouring)) > 100 * EXAMPLE_ATOL


# --- the model: draw s of a key --------------------------------------------------------


def draw_keys(key, num_samples: int, draw_key=fold_in) -> np.ndarray:
    """The raw data of the keys of draws 0, ..., num_samples - 1 of ``key``."""
    return np.stack([key_bits(draw_key(key, s)) for s in range(num_samples)])


@jax.jit
def drawn_latents(keys, loc, log_scale):
    """README: z = mu + sigma * eps, draw s with eps ~ N(0, I) from its key."""
    eps = jax.vmap(lambda k: jax.random.normal(jax.random.wrap_key_data(k), loc.shape))(keys)
    return loc + jnp.exp(log_scale) * eps


def gaussian_log_density(z, loc, log_scale):
    standardized = (z - loc) * jnp.exp(-log_scale)
    return jnp.sum(-0.5 * standardized**2 - log_scale - 0.5 * np.log(2 * np.pi), axis=-1)


# (jax.random.split(key, n)[s] is no neighbour: with threefry it equals fold_in(key, s).)
DRAW_NEIGHBOURS = {
    "draw_s_with_fold_in_s_plus_1": lambda key, s: fold_in(key, s + 1),
    "first_draw_with_the_key_itself": lambda key, s: key if s == 0 else fold_in(key, s),
    "each_chunk_restarting_at_draw_0": lambda key, s: fold_in(key, s % CHUNK),
}
NUM_DRAWS = 3  # of the training batch (one chunk); the bound has K = 16 in chunks of 8
Z_ATOL, BOUND_ATOL = 1e-6, 1e-3  # measured: 0 and 3e-5 (1 ulp of -500 nats)
NUM_DRAW_EXAMPLES = 8


@pytest.fixture(scope="module")
def model_draws(run, dataset, config, direct):
    """The model's latent draws for a batch of test images with the latent key of step 0,
    and its importance-weighted bounds of test examples i with fold_in(test_iwae key, i);
    ``by_hand(draw_key) -> (draws, bounds)`` the same with draw s keyed draw_key(key, s)."""
    vae, params = run["vae"], run["params"]
    images = dataset.test.images[:NUM_DRAW_EXAMPLES]
    x = jnp.asarray(images, jnp.float32)
    training_key = fold_in(streams_of(config.seed)["latent"], 0)
    evaluation_key = purpose_key(config.seed, "test_iwae")

    @jax.jit
    def from_the_model(params, key, x):
        q = vae.encode(params, x)
        return q, vae.reparameterize(key, q, NUM_DRAWS)

    @jax.jit
    @jax.vmap
    def bounds_from_keys(keys, x):
        q = vae.encode(params, x)
        z = drawn_latents(keys, q.loc, q.log_scale)
        log_weights = (
            vae.decode(params, z).log_prob(x)
            + gaussian_log_density(z, 0.0, 0.0)
            - gaussian_log_density(z, q.loc, q.log_scale)
        )
        return jax.nn.logsumexp(log_weights, axis=0) - np.log(K)

    q, z = from_the_model(params, training_key, x)

    def by_hand(draw_key):
        z = drawn_latents(draw_keys(training_key, NUM_DRAWS, draw_key), q.loc, q.log_scale)
        keys = [draw_keys(fold_in(evaluation_key, i), K, draw_key) for i in range(len(x))]
        return np.asarray(z), np.asarray(bounds_from_keys(np.stack(keys), x))

    return {
        "z": np.asarray(z),
        "bounds": direct("iwae", evaluation_key, images),
        "by_hand": by_hand,
    }


@pytest.mark.slow
def test_latent_draw_s_uses_fold_in_of_the_key(model_draws):
    """Within the model, draw s of a key uses fold_in(key, s): reparameterize's draws and
    the K draws of the importance-weighted bound (in chunks) equal draws made by hand."""
    z, bounds = model_draws["by_hand"](fold_in)
    np.testing.assert_allclose(model_draws["z"], z, rtol=0, atol=Z_ATOL)
    np.testing.assert_allclose(model_draws["bounds"], bounds, rtol=0, atol=BOUND_ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("neighbour", list(DRAW_NEIGHBOURS))
def test_latent_draws_differ_from_a_neighbouring_derivation(model_draws, neighbour):
    """The check above can tell: the draws or the bounds move far beyond the tolerance."""
    z, bounds = model_draws["by_hand"](DRAW_NEIGHBOURS[neighbour])
    z_moved = np.max(np.abs(model_draws["z"] - z))
    bounds_moved = np.max(np.abs(model_draws["bounds"] - bounds))
    assert z_moved > 1000 * Z_ATOL or bounds_moved > 10 * BOUND_ATOL


# --- evaluation: figures ---------------------------------------------------------------


@pytest.fixture(scope="module")
def figure_keys(run, dataset, config, tmp_path_factory):
    """The keys the evaluator hands the reconstruction and generation figures (drawing
    is stubbed out: only the keys are of interest here)."""
    keys = {}

    def reconstructions(vae, params, key, x, path, **kwargs):
        keys["reconstructions"] = key_bits(key)
        return path

    def generations(vae, params, key, path, **kwargs):
        keys["generations"] = key_bits(key)
        return path

    evaluator = Evaluator(
        run["vae"],
        dataset,
        **adapter.evaluator_options(config),
        num_importance_samples=1,
        chunk_size=1,
        batch_size=25,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "reconstructions", reconstructions)
        patch.setattr(figures, "generations", generations)
        patch.setattr(figures, "interpolation", lambda *args, **kwargs: args[-1])
        patch.setattr(figures, "training_curves", lambda records, path: path)
        evaluator.figures(run["params"], config.seed, tmp_path_factory.mktemp("figures"))
    return keys


def figure_key_pair(key, *, swapped: bool = False) -> dict:
    first, second = jax.random.split(key, 2)
    if swapped:
        first, second = second, first
    return {"reconstructions": key_bits(first), "generations": key_bits(second)}


FIGURE_NEIGHBOURS = {
    "mutual_information_purpose": lambda seed: figure_key_pair(
        purpose_key(seed, "mutual_information")
    ),
    "generate_stream": lambda seed: figure_key_pair(streams_of(seed)["generate"]),
    "generate_stream_figures_purpose": lambda seed: figure_key_pair(
        fold_in(streams_of(seed)["generate"], EVAL_PURPOSE_IDS["figures"])
    ),
    "reconstruction_and_generation_keys_swapped": lambda seed: figure_key_pair(
        purpose_key(seed, "figures"), swapped=True
    ),
}


@pytest.mark.slow
def test_figures_draw_from_the_figures_purpose(figure_keys, config):
    """Figures draw from the eval stream's figures purpose: split(fold_in(eval, 4), 2),
    the first key for reconstructions, the second for generations from the prior."""
    expected = figure_key_pair(purpose_key(config.seed, "figures"))
    for figure in ("reconstructions", "generations"):
        np.testing.assert_array_equal(figure_keys[figure], expected[figure], err_msg=figure)


@pytest.mark.slow
@pytest.mark.parametrize("neighbour", list(FIGURE_NEIGHBOURS))
def test_figure_keys_differ_from_a_neighbouring_derivation(figure_keys, config, neighbour):
    """The check above can tell."""
    neighbouring = FIGURE_NEIGHBOURS[neighbour](config.seed)
    for figure in ("reconstructions", "generations"):
        assert not np.array_equal(figure_keys[figure], neighbouring[figure]), figure
