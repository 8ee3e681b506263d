"""``evaluate_run(workdir)``: test NLL, ELBO, latent diagnostics and figures of a run.

Keys come from the run's ``eval`` stream (one fixed sub-stream per quantity, one key per
test example), so evaluating the same checkpoint again gives the same numbers. Results
are merged into ``report.json`` under ``"evaluation"``, summarized in ``report.md``, and
returned. While a training holds the workdir, ``--step=N`` evaluates that checkpoint into
``<workdir>/evaluations/step_<N>/``, files the training never touches; without ``--step``
the evaluation is refused, naming the training's process. ``Evaluator`` compiles the
work once and evaluates any number of runs of the same model (a seed sweep).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import jax
import numpy as np
from absl import logging

from vae_jax import adapter, model
from vae_jax.core import networks, rng
from vae_jax.data import batching, load_dataset
from vae_jax.errors import ConfigError, DataError
from vae_jax.evaluation import (
    ais_evaluation,
    bounds,
    diagnostics,
    figures,
    per_example,
    report_files,
)
from vae_jax.model import hierarchy
from vae_jax.run import files, loading
from vae_jax.run.lock import WorkdirBusyError, WorkdirLock
from vae_jax.run.metrics_log import read_metrics
from vae_jax.run.progress import Progress
from vae_jax.run.reports import final_report

# Likelihoods whose log-likelihood is a log-probability of discrete data (bits/dim apply).
DISCRETE_LIKELIHOODS = ("bernoulli", "discretized_logistic")


class Evaluator:
    """The compiled evaluation of one model on one dataset's test split.

    ``vae`` is the model in its evaluation precision (``adapter.evaluation_vae_from_config``).
    The bound is compiled once, timed apart from its first batch, and reused for every run;
    ``timings`` holds the seconds of each phase of the latest ``evaluate`` and ``figures``.
    """

    def __init__(self, vae, dataset, config, *, num_importance_samples, chunk_size, batch_size):
        self.vae, self.dataset, self.config = vae, dataset, config
        self.k, self.chunk, self.batch = num_importance_samples, chunk_size, batch_size
        evaluation = config.evaluation
        self._iwae = bounds.make_iwae_evaluator(
            vae, dataset.preprocessing, num_samples=self.k, chunk_size=self.chunk
        )
        self._elbo = bounds.make_elbo_evaluator(
            vae, dataset.preprocessing, num_samples=evaluation.num_elbo_samples
        )
        self._bound_compiled = False
        self.timings: dict[str, float] = {}

    def _compile_bound(self, params, key, images) -> None:
        """Compiles the bound's batch evaluator ahead of its first batch, to time it apart
        (the jitted function then finds the executable in JAX's compilation cache)."""
        if not self._bound_compiled:
            started = time.perf_counter()
            indices = np.asarray(batching.ordered_batches(1, self.batch).indices[0])
            self._iwae.lower(params, key, images, indices).compile()
            self.timings["compile_test_nll_bound"] = time.perf_counter() - started
            self._bound_compiled = True

    def evaluate(self, params, seed: int, *, description: str = "test NLL") -> dict:
        """All numbers for the parameters of the run with this seed (its keys)."""
        vae, dataset, test = self.vae, self.dataset, self.dataset.test
        streams = rng.make_streams(seed)
        keys = {p: rng.eval_key(streams.eval, p) for p in ("test_iwae", "test_elbo")}
        keys["mutual_information"] = rng.eval_key(streams.eval, "mutual_information")
        self.timings = {k: v for k, v in self.timings.items() if k.startswith("compile")}
        self._compile_bound(params, keys["test_iwae"], test.images)
        progress = Progress(
            test.num_examples, unit="example", description=f"{description} (K={self.k})"
        )
        started = time.perf_counter()
        try:
            iwae = per_example.evaluate_examples(
                self._iwae, params, keys["test_iwae"], test.images, self.batch,
                on_batch=progress.update,
            )  # fmt: skip
        finally:
            progress.close()
        self.timings["test_nll_bound"] = time.perf_counter() - started
        started = time.perf_counter()
        elbo = per_example.evaluate_examples(
            self._elbo, params, keys["test_elbo"], test.images, self.batch
        )
        self.timings["test_elbo"] = time.perf_counter() - started
        started = time.perf_counter()
        means, log_scales = diagnostics.posterior_parameters(
            vae, params, test.images, dataset.preprocessing, self.batch
        )
        activity, active = diagnostics.active_units(means)
        mutual_information = diagnostics.mutual_information(
            keys["mutual_information"], means, log_scales
        )
        self.timings["latent_diagnostics"] = time.perf_counter() - started
        return {
            "split": "test",
            "num_examples": test.num_examples,
            "compute_dtype": self.config.evaluation.compute_dtype,
            "num_importance_samples": self.k,
            "importance_chunk_size": self.chunk,
            "keys": {
                "seed": int(seed),
                "derivation": "fold_in(fold_in(eval_stream, purpose_id), example_index)",
                "purpose_ids": {p: rng.EVAL_PURPOSE_IDS[p] for p in keys},
            },
            "test_nll": _nll_summary(iwae, vae, dataset),
            "test_elbo": _elbo_summary(
                elbo, self.config.evaluation.num_elbo_samples, model.evaluation_kl(vae)
            ),
            "latent": {
                "dimensions": vae.latent_dim,
                "active_units": int(active.sum()),
                "activity_threshold": diagnostics.ACTIVITY_THRESHOLD,
                "activity": activity.tolist(),
                # Against N(0, 1); a learned prior or a flow has no KL per dimension.
                "kl_per_dim": (
                    diagnostics.kl_per_dimension(means, log_scales).tolist()
                    if model.evaluation_kl(vae) == "analytic"
                    else None
                ),
                # Active units and I(x;z) describe this Gaussian.
                "posterior_described": vae.posterior_described,
                "mutual_information_nats": mutual_information,
                "mutual_information_upper_bound_log_n": float(np.log(test.num_examples)),
                # At its ceiling: the number measures the test set's size, not the code.
                "mutual_information_saturated": diagnostics.mutual_information_saturated(
                    mutual_information, test.num_examples
                ),
                "mutual_information_saturated_rule": (
                    f"log N - I < {diagnostics.SATURATION_GAP_NATS:g} nats"
                ),
            },
            "layers": _layer_summaries(vae, active, elbo["kl_per_dim"]),
            "data": {
                "dataset": dataset.name,
                "protocol": dataset.record["protocol"],
                "fingerprint_sha256": dataset.record["fingerprint_sha256"],
            },
        }

    def figures(self, params, seed: int, workdir: Path, out_dir: Path | None = None) -> list[str]:
        """The figures of the run in ``workdir``, with keys from its ``eval`` stream, in
        ``<out_dir>/figures`` (default: the workdir's)."""
        started = time.perf_counter()
        paths = self._figures(params, seed, Path(workdir), Path(out_dir or workdir))
        self.timings["figures"] = time.perf_counter() - started
        return paths

    def _figures(self, params, seed: int, workdir: Path, out_dir: Path) -> list[str]:
        vae, dataset, config = self.vae, self.dataset, self.config
        folder = out_dir / files.FIGURES_DIR
        test = dataset.test
        key = rng.eval_key(rng.make_streams(seed).eval, "figures")
        keys = jax.random.split(key, 2)
        count = min(config.evaluation.num_figure_examples, test.num_examples)
        x = dataset.preprocessing.eval_input(test.images[:count])
        num_bins = config.model.num_bins
        paths = [
            figures.reconstructions(vae, params, keys[0], x, folder / "reconstructions.png",
                                    num_bins=num_bins),
            figures.generations(vae, params, keys[1], folder / "generations.png",
                                num_bins=num_bins),
            figures.training_curves(read_metrics(workdir), folder / "training_curves.png"),
        ]  # fmt: skip
        if test.num_examples >= 2:
            x_pair = dataset.preprocessing.eval_input(test.images[:2])
            paths.append(figures.interpolation(vae, params, x_pair, folder / "interpolation.png",
                                               num_bins=num_bins))  # fmt: skip
        if vae.latent_dim == 2 and len(vae.latent_layers) == 1:
            means, _ = diagnostics.posterior_parameters(
                vae, params, test.images, dataset.preprocessing, self.batch
            )
            paths.append(figures.latent_manifold(vae, params, folder / "latent_manifold.png",
                                                 num_bins=num_bins))  # fmt: skip
            paths.append(figures.latent_scatter(means, np.asarray(test.labels),
                                                folder / "latent_scatter.png"))  # fmt: skip
        logging.info("figures in %s", folder)
        return [str(p) for p in paths]


def _default(value, default):
    return default if value is None else value


def resolve_options(evaluation_config, num_importance_samples, chunk_size, batch_size):
    """Flag values (None = the run's config), checked before any work starts."""
    k = int(_default(num_importance_samples, evaluation_config.num_importance_samples))
    chunk = int(_default(chunk_size, evaluation_config.importance_chunk_size))
    batch = int(_default(batch_size, evaluation_config.batch_size))
    for flag, value in (
        ("--num_importance_samples", k),
        ("--importance_chunk_size", chunk),
        ("--batch_size", batch),
    ):
        if value < 1:
            raise ConfigError(f"{flag}={value} must be >= 1")
    return k, chunk, batch


def check_same_data(workdir: Path, dataset) -> None:
    difference = files.data_difference(
        files.recorded_fingerprints(workdir), dataset.record["fingerprint_sha256"], ("test",)
    )
    if difference:
        raise DataError(f"cannot evaluate the run in {workdir}: {difference}")
    protocol = files.protocol_difference(files.recorded_data_record(workdir), dataset.record)
    if protocol:
        logging.warning(
            "%s: %s; the test set is preprocessed as now (report.json records how)",
            workdir,
            protocol,
        )


def resolved_config(workdir, *, data_dir: str | None = None, compute_dtype: str | None = None):
    """The run's config as an evaluation uses it: recorded fields (older runs completed
    with the values they used), with ``data_dir`` and ``compute_dtype`` if given."""
    config = loading.load_config(files.workdir_path(workdir))
    if data_dir:
        config.data.data_dir = data_dir
    if compute_dtype:
        config.evaluation.compute_dtype = compute_dtype
    return config


def evaluate_run(
    workdir: str | Path,
    *,
    step: int | None = None,
    num_importance_samples: int | None = None,
    importance_chunk_size: int | None = None,
    batch_size: int | None = None,
    data_dir: str | None = None,
    make_figures: bool = True,
    compute_dtype: str | None = None,
    estimator: str = "iwae",
    bdmc: bool = False,
    ais_overrides: dict | None = None,
) -> dict:
    """Evaluates checkpoint ``step`` (default: newest valid) of the run in ``workdir``;
    ``compute_dtype`` overrides the run's ``evaluation.compute_dtype``. ``estimator="ais"``
    and ``bdmc`` add the sections of ``ais_evaluation`` (``ais_overrides``: its flags)."""
    workdir = files.workdir_path(workdir)
    ais_plan = ais_evaluation.plan(
        loading.load_config(workdir).evaluation,
        estimator=estimator,
        bdmc=bdmc,
        overrides=ais_overrides,
    )
    k, chunk, batch = resolve_options(
        loading.load_config(workdir).evaluation,
        num_importance_samples,
        importance_chunk_size,
        batch_size,
    )
    with _owning_unless_step_given(workdir, step) as out_dir:
        vae, state, record, _ = loading.load_state(workdir, step)
        config = resolved_config(workdir, data_dir=data_dir, compute_dtype=compute_dtype)
        dataset = load_dataset(config)
        check_same_data(workdir, dataset)
        evaluator = Evaluator(
            adapter.evaluation_vae_from_config(config, vae.image_shape),
            dataset,
            config,
            num_importance_samples=k,
            chunk_size=chunk,
            batch_size=batch,
        )
        return evaluate_and_report(
            evaluator,
            workdir,
            state,
            record,
            make_figures=make_figures,
            out_dir=out_dir,
            sections=ais_evaluation.sections(ais_plan, evaluator),
        )


@contextlib.contextmanager
def _owning_unless_step_given(workdir: Path, step: int | None):
    """Evaluation owns the workdir while it runs and yields it as where its files go. A
    workdir that is training is refused (its newest checkpoint is moving) unless
    ``--step`` names one checkpoint: that one is evaluated into
    ``evaluations/step_<N>/`` (owned by this evaluation), which the training never
    touches, so neither process writes the other's files."""
    lock = WorkdirLock(workdir, "evaluation")
    try:
        lock.acquire()
        out_dir = workdir
    except WorkdirBusyError as error:
        if step is None:
            raise WorkdirBusyError(
                f"{error}; or give --step=N to evaluate one of its checkpoints into "
                f"{workdir / files.EVALUATIONS_DIR}/step_<N>/"
            ) from None
        out_dir = workdir / files.EVALUATIONS_DIR / f"step_{step}"
        lock = WorkdirLock(out_dir, f"evaluation of step {step}").acquire()
        logging.warning("%s; evaluating checkpoint %d into %s", error, step, out_dir)
    try:
        yield out_dir
    finally:
        lock.release()


def evaluate_and_report(
    evaluator,
    workdir: Path,
    state,
    record,
    *,
    make_figures=True,
    quiet=False,
    out_dir=None,
    sections=None,
):
    """Evaluates one run's state, writes its report files (in ``out_dir``, default the
    workdir) and returns the result; ``sections`` (name -> ``(params, seed) -> dict``) adds
    more (AIS, BDMC). A write the file system refuses (full, read-only) is one line naming
    the file; what was written before stays."""
    out_dir = Path(out_dir or workdir)
    started = time.perf_counter()
    seed = int(record["seed"])
    result = {"checkpoint": {"step": int(state.step), "epoch": int(record["epoch"])}}
    result.update(evaluator.evaluate(state.params, seed))
    for name, evaluate_section in (sections or {}).items():
        result[name] = evaluate_section(state.params, seed)
    try:
        if make_figures:
            result["figures"] = evaluator.figures(state.params, seed, workdir, out_dir)
        result["seconds"] = time.perf_counter() - started
        result["timings_seconds"] = dict(evaluator.timings)
        report_files.write_evaluation(
            out_dir, result, quiet=quiet, rebuild=lambda: _training_summary(workdir, state)
        )
    except OSError as error:
        if not files.user_fixable(error):
            raise
        raise files.unwritable(error) from None
    return result


def _training_summary(workdir: Path, state) -> dict:
    """The training part of ``report.json`` rebuilt from ``metrics.jsonl`` (when the file
    was damaged): what training writes, but for its wall-clock times, which are lost."""
    config = loading.load_config(workdir)
    records = read_metrics(workdir)
    report = final_report(
        records,
        seed=int(config.seed),
        num_parameters=networks.num_parameters(state.params),
        data_record=files.recorded_data_record(workdir),
        train_seconds=None,
        compile_seconds=None,
    )
    if report["epochs_completed"] != config.training.num_epochs:
        report["status"] = "partial"
    report["rebuilt"] = "from metrics.jsonl: report.json was damaged (kept beside it)"
    return report


def _layer_summaries(vae, active: np.ndarray, kl_per_dim: np.ndarray) -> list[dict] | None:
    """Per stochastic layer (``z_1`` first): its size, active units and test KL
    ``E[log q(z_l|.) - log p(z_l|z_{l+1})]``; None for one layer."""
    if len(vae.latent_layers) == 1:
        return None
    layer_active = hierarchy.layer_sums(active.astype(np.int64), vae.latent_layers)
    layer_kl = hierarchy.layer_sums(np.asarray(kl_per_dim, np.float64), vae.latent_layers)
    return [
        {
            "layer": i + 1,
            "dimensions": size,
            "active_units": int(count),
            "kl": float(np.mean(kl, dtype=np.float64)),
        }
        for i, (size, count, kl) in enumerate(
            zip(vae.latent_layers, layer_active, layer_kl, strict=True)
        )
    ]


def _nll_summary(iwae: np.ndarray, vae, dataset) -> dict:
    bound, standard_error = bounds.mean_and_standard_error(iwae)
    summary = {
        "nats": -bound,
        "standard_error": standard_error,
        "estimator": "importance-weighted bound (Burda et al. 2015), an upper bound on -log p(x)",
    }
    if vae.likelihood in DISCRETE_LIKELIHOODS:
        summary["bits_per_dim"] = bounds.bits_per_dim(-bound, int(np.prod(dataset.image_shape)))
    return summary


def _elbo_summary(elbo: dict, num_samples: int, kl_estimator: str) -> dict:
    value, standard_error = bounds.mean_and_standard_error(elbo["elbo"])
    return {
        "elbo": value,
        "standard_error": standard_error,
        "log_likelihood": float(np.mean(elbo["log_likelihood"], dtype=np.float64)),
        "kl": float(np.mean(elbo["kl"], dtype=np.float64)),
        "num_samples": int(num_samples),
        "kl_estimator": kl_estimator,
    }
