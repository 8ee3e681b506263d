"""AIS test NLL and BDMC of a run: the ``"ais"`` and ``"bdmc"`` sections of report.json.

``experiments.evaluate --estimator=ais`` estimates ``log p(x)`` of the first
``evaluation.ais_num_examples`` test images by annealed importance sampling
(``vae_jax.evaluation.vae_ais``) and puts beside it the importance-weighted bound of the
same images with the run's keys and K (the numbers the main evaluation computes for them),
and their gap; ``--bdmc`` brackets ``log p(x)`` on ``evaluation.bdmc_num_examples``
examples simulated from the model (forward and reverse AIS).

Keys: sub-streams of the run's ``eval`` stream beside ``rng.EVAL_PURPOSE_IDS``: test
image ``i`` anneals with ``fold_in(fold_in(eval, 6), i)`` and simulated example ``i`` is
drawn and bracketed from ``fold_in(fold_in(eval, 7), i)`` (``vae_ais`` documents the keys
under each).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import numpy as np

from vae_jax.core import rng
from vae_jax.data import batching
from vae_jax.errors import ConfigError
from vae_jax.evaluation import ais, bounds, per_example, vae_ais
from vae_jax.run import files
from vae_jax.run.progress import Progress

ESTIMATORS = ("iwae", "ais")
# Sub-streams of ``eval`` (fixed ids, after rng.EVAL_PURPOSE_IDS's 0-5).
PURPOSE_IDS: dict[str, int] = {"test_ais": 6, "bdmc": 7}
# config.evaluation's AIS fields and the values a run written before them gets (one list:
# the run directory's added fields).
CONFIG_DEFAULTS: dict[str, object] = {
    field.partition(".")[2]: value
    for field, value in files.ADDED_CONFIG_FIELDS.items()
    if field.startswith(("evaluation.ais_", "evaluation.bdmc_"))
}
DISCRETE_LIKELIHOODS = ("bernoulli", "discretized_logistic")


class Plan(NamedTuple):
    """What ``--estimator=ais`` and ``--bdmc`` run, checked before any work."""

    estimator: str
    bdmc: bool
    options: vae_ais.AISOptions
    num_examples: int  # test images (0: all)
    bdmc_num_examples: int


def _field(evaluation_config, name: str):
    value = evaluation_config.get(name, None)
    return CONFIG_DEFAULTS[name] if value is None else value


def plan(
    evaluation_config, *, estimator: str = "iwae", bdmc: bool = False, overrides=None
) -> Plan | None:
    """The AIS work a command asks for (None: none), from ``config.evaluation`` and the
    flag values in ``overrides`` (field name without ``evaluation.`` -> value, None = the
    config's). A bad value fails in one line naming the flag."""
    if estimator not in ESTIMATORS:
        raise ConfigError(f"--estimator={estimator!r} is not one of {list(ESTIMATORS)}")
    if estimator != "ais" and not bdmc:
        return None
    values = {name: _field(evaluation_config, name) for name in CONFIG_DEFAULTS}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    for name in ("ais_num_steps", "ais_num_chains", "ais_leapfrog_steps",
                 "ais_chain_chunk_size", "bdmc_num_examples"):  # fmt: skip
        if int(values[name]) < 1:
            raise ConfigError(f"--{name}={values[name]} must be >= 1")
    if int(values["ais_num_examples"]) < 0:
        raise ConfigError(f"--ais_num_examples={values['ais_num_examples']} must be >= 0 (0: all)")
    if not 0 < float(values["ais_target_acceptance"]) < 1:
        raise ConfigError(
            f"evaluation.ais_target_acceptance={values['ais_target_acceptance']} must be in (0, 1)"
        )
    for name, choices in (("ais_schedule", ais.SCHEDULES),
                          ("ais_initial", vae_ais.INITIAL_DISTRIBUTIONS)):  # fmt: skip
        if values[name] not in choices:
            raise ConfigError(f"--{name}={values[name]!r} is not one of {list(choices)}")
    options = vae_ais.AISOptions(
        num_steps=int(values["ais_num_steps"]),
        num_chains=int(values["ais_num_chains"]),
        chain_chunk_size=int(values["ais_chain_chunk_size"]),
        schedule=str(values["ais_schedule"]),
        initial=str(values["ais_initial"]),
        hmc=ais.HMCSettings(
            num_leapfrog_steps=int(values["ais_leapfrog_steps"]),
            target_acceptance=float(values["ais_target_acceptance"]),
        ),
    )
    return Plan(
        estimator,
        bool(bdmc),
        options,
        int(values["ais_num_examples"]),
        int(values["bdmc_num_examples"]),
    )


def sections(run_plan: Plan | None, evaluator) -> dict:
    """``{name: (params, seed) -> section}`` for ``evaluate_run.evaluate_and_report``."""
    if run_plan is None:
        return {}
    if run_plan.options.initial == "posterior":  # refused before any work
        vae = evaluator.vae
        abstract_params = jax.eval_shape(vae.init, jax.random.key(0))
        x = jax.ShapeDtypeStruct(vae.image_shape, np.float32)
        try:
            vae_ais.check_density_everywhere(jax.eval_shape(vae.encode, abstract_params, x))
        except ValueError as error:
            raise ConfigError(f"--estimator=ais/--bdmc: {error}") from None
    found = {}
    if run_plan.estimator == "ais":
        found["ais"] = lambda params, seed: evaluate_ais(evaluator, params, seed, run_plan)
    if run_plan.bdmc:
        found["bdmc"] = lambda params, seed: evaluate_bdmc(evaluator, params, seed, run_plan)
    return found


def options_record(options: vae_ais.AISOptions) -> dict:
    hmc = options.hmc
    return {
        "num_steps": options.num_steps,
        "num_chains": options.num_chains,
        "chain_chunk_size": options.chain_chunk_size,
        "schedule": options.schedule,
        "initial": options.initial,
        "num_leapfrog_steps": hmc.num_leapfrog_steps,
        "initial_step_size": hmc.initial_step_size,
        "target_acceptance": hmc.target_acceptance,
        "step_size_adapted": hmc.adapt_step_size,
    }


def _per_example_summary(result: ais.AISResult) -> dict:
    return {
        "log_px": result.log_normalizer,
        "acceptance_rate": result.acceptance_rate,
        "step_size": result.step_size,
    }


def _mean_and_error(values) -> dict:
    mean, standard_error = bounds.mean_and_standard_error(values)
    return {"mean": mean, "standard_error": standard_error}


def _acceptance(rates: np.ndarray) -> dict:
    rates = np.asarray(rates, np.float64)
    return {"mean": float(rates.mean()), "min": float(rates.min()), "max": float(rates.max())}


def evaluate_ais(evaluator, params, seed: int, run_plan: Plan, iwae=None) -> dict:
    """The AIS test NLL of the first ``num_examples`` test images, beside their IWAE bound
    (``iwae``: those images' bounds when already computed with the run's keys)."""
    vae, dataset, options = evaluator.vae, evaluator.dataset, run_plan.options
    test = dataset.test
    count = test.num_examples if run_plan.num_examples == 0 else run_plan.num_examples
    count = min(count, test.num_examples)
    images = test.images[:count]
    streams = rng.make_streams(seed)
    key = jax.random.fold_in(streams.eval, PURPOSE_IDS["test_ais"])
    evaluate_batch = per_example.make_batch_evaluator(
        lambda p, k, x: _per_example_summary(vae_ais.log_likelihood(vae, p, k, x, options)),
        dataset.preprocessing,
    )
    batch = min(evaluator.batch, count)  # no padded work when fewer images than a batch
    started = time.perf_counter()
    indices = np.asarray(batching.ordered_batches(count, batch).indices[0])
    evaluate_batch.lower(params, key, images, indices).compile()
    compile_seconds = time.perf_counter() - started
    progress = Progress(
        count, unit="example",
        description=f"AIS NLL (T={options.num_steps}, {options.num_chains} chains)",
    )  # fmt: skip
    started = time.perf_counter()
    try:
        found = per_example.evaluate_examples(
            evaluate_batch, params, key, images, batch, on_batch=progress.update
        )
    finally:
        progress.close()
    ais_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if iwae is None:
        iwae = test_image_bounds(evaluator, params, seed, images)
    iwae = np.asarray(iwae, np.float64)
    iwae_seconds = time.perf_counter() - started
    log_px = np.asarray(found["log_px"], np.float64)
    nll, iwae_nll = _mean_and_error(-log_px), _mean_and_error(-iwae)
    section = {
        "estimator": "annealed importance sampling with HMC (Neal 2001; Wu et al. 2017): "
        "log mean exp of the chains' weights, a stochastic lower bound on log p(x)",
        "num_examples": int(count),
        "options": options_record(options),
        "nll_nats": nll["mean"],
        "standard_error": nll["standard_error"],
        "iwae_same_examples": {
            "num_importance_samples": int(evaluator.k),
            "nll_nats": iwae_nll["mean"],
            "standard_error": iwae_nll["standard_error"],
        },
        # IWAE NLL minus AIS NLL per image (paired): how much looser the IWAE bound is.
        "iwae_minus_ais_nats": _mean_and_error(log_px - iwae),
        "acceptance_rate": _acceptance(found["acceptance_rate"]),
        "final_step_size_mean": float(np.mean(found["step_size"], dtype=np.float64)),
        "seconds": {"compile": compile_seconds, "ais": ais_seconds, "iwae": iwae_seconds},
        "keys": {
            "seed": int(seed),
            "derivation": "fold_in(fold_in(eval_stream, 6), example_index); under it, "
            "chain c's initial draw fold_in(fold_in(k, 0), c), transition j's momentum "
            "fold_in(fold_in(fold_in(k, 1), j), c) and accept test fold_in(fold_in(fold_in("
            "k, 2), j), c)",
            "purpose_id": PURPOSE_IDS["test_ais"],
        },
    }
    if vae.likelihood in DISCRETE_LIKELIHOODS:
        section["bits_per_dim"] = bounds.bits_per_dim(nll["mean"], int(np.prod(vae.image_shape)))
    return section


def test_image_bounds(evaluator, params, seed: int, images) -> np.ndarray:
    """The importance-weighted bounds of the first test images, with the run's keys and K
    (``test_iwae``: what the main evaluation computes for them)."""
    key = rng.eval_key(rng.make_streams(seed).eval, "test_iwae")
    return bounds.importance_weighted_bounds(
        evaluator.vae, params, key, images, evaluator.dataset.preprocessing,
        num_samples=evaluator.k, chunk_size=evaluator.chunk, batch_size=evaluator.batch,
    )  # fmt: skip


def _bdmc_summary(result: vae_ais.BDMCResult) -> dict:
    return {
        "lower": result.lower.log_normalizer,
        "upper": result.upper.log_normalizer,
        "forward_acceptance": result.lower.acceptance_rate,
        "reverse_acceptance": result.upper.acceptance_rate,
    }


def bdmc_batches(vae, params, key, num_examples: int, batch_size: int, options, on_batch=None):
    """Per simulated example ``i`` (key ``fold_in(key, i)``): both bounds and acceptance
    rates, as numpy arrays over the ``num_examples`` examples."""

    @jax.jit
    def batch(params, indices):
        keys = rng.example_keys(key, indices)
        return jax.vmap(lambda k: _bdmc_summary(vae_ais.bdmc(vae, params, k, options)))(keys)

    batches = batching.ordered_batches(num_examples, batch_size)
    outputs, done = [], 0
    for indices, mask in zip(np.asarray(batches.indices), np.asarray(batches.mask), strict=True):
        valid = int(mask.sum())
        outputs.append(jax.tree.map(lambda a, n=valid: np.asarray(a)[:n], batch(params, indices)))
        done += valid
        if on_batch is not None:
            on_batch(done)
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def evaluate_bdmc(evaluator, params, seed: int, run_plan: Plan) -> dict:
    """Forward and reverse AIS on examples simulated from the model: the bracket."""
    options, count = run_plan.options, run_plan.bdmc_num_examples
    key = jax.random.fold_in(rng.make_streams(seed).eval, PURPOSE_IDS["bdmc"])
    progress = Progress(count, unit="example", description=f"BDMC (T={options.num_steps})")
    started = time.perf_counter()
    try:
        found = bdmc_batches(
            evaluator.vae,
            params,
            key,
            count,
            min(evaluator.batch, count),
            options,
            progress.update,
        )
    finally:
        progress.close()
    lower = np.asarray(found["lower"], np.float64)
    upper = np.asarray(found["upper"], np.float64)
    return {
        "estimator": "bidirectional Monte Carlo (Grosse et al. 2015) on data simulated from "
        "the model: forward AIS (lower) and reverse AIS from the simulating z (upper)",
        "num_examples": int(count),
        "options": options_record(options),
        "lower_log_px": _mean_and_error(lower),
        "upper_log_px": _mean_and_error(upper),
        "gap_nats": _mean_and_error(upper - lower),
        "max_gap_nats": float(np.max(upper - lower)),
        "forward_acceptance_rate": _acceptance(found["forward_acceptance"]),
        "reverse_acceptance_rate": _acceptance(found["reverse_acceptance"]),
        "seconds": time.perf_counter() - started,
        "keys": {
            "seed": int(seed),
            "derivation": "k = fold_in(fold_in(eval_stream, 7), example_index); z ~ p(z) "
            "with fold_in(k, 0), x ~ p(x|z) with fold_in(k, 1), forward AIS fold_in(k, 2), "
            "reverse AIS fold_in(k, 3)",
            "purpose_id": PURPOSE_IDS["bdmc"],
        },
    }


def _format(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def summary_rows(result: dict) -> list[tuple[str, str]]:
    """report.md's (and the screen's) rows of the ``ais`` and ``bdmc`` sections."""
    rows = []
    found = result.get("ais")
    if found:
        o, iwae = found["options"], found["iwae_same_examples"]
        gap = found["iwae_minus_ais_nats"]
        acceptance = found["acceptance_rate"]
        rows += [
            (f"test NLL, AIS T={o['num_steps']}, {o['num_chains']} chains (nats)",
             f"{_format(found['nll_nats'])} ± {_format(found['standard_error'])} "
             f"({found['num_examples']} test images)"),
            (f"  IWAE bound, K={iwae['num_importance_samples']}, same images",
             f"{_format(iwae['nll_nats'])} ± {_format(iwae['standard_error'])}"),
            ("  IWAE minus AIS (nats)",
             f"{_format(gap['mean'])} ± {_format(gap['standard_error'])}"),
            ("  HMC acceptance rate", f"{acceptance['mean']:.2f} "
             f"({acceptance['min']:.2f} to {acceptance['max']:.2f})"),
            ("  AIS seconds", f"{found['seconds']['ais']:.1f} "
             f"(+ {found['seconds']['compile']:.1f} compiling)"),
        ]  # fmt: skip
    found = result.get("bdmc")
    if found:
        gap = found["gap_nats"]
        rows += [
            (f"BDMC, {found['num_examples']} simulated examples: log p(x) in",
             f"[{_format(found['lower_log_px']['mean'])}, "
             f"{_format(found['upper_log_px']['mean'])}]"),
            ("  upper minus lower (nats)",
             f"{_format(gap['mean'])} ± {_format(gap['standard_error'])} "
             f"(max {_format(found['max_gap_nats'])})"),
        ]  # fmt: skip
    return rows
