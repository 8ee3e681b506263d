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

import numpy as np
from absl import logging

from vae_jax import adapter
from vae_jax.core import networks, rng
from vae_jax.data import load_dataset
from vae_jax.errors import ConfigError, DataError
from vae_jax.evaluation import ais_evaluation, evaluators, report_files, report_schema
from vae_jax.run import files, loading
from vae_jax.run.lock import WorkdirBusyError, WorkdirLock
from vae_jax.run.metrics_log import read_metrics
from vae_jax.run.progress import Progress
from vae_jax.run.reports import final_report

DISCRETE_LIKELIHOODS = report_schema.DISCRETE_LIKELIHOODS

# The eval stream's purposes the test numbers draw from, in the report's order.
EVALUATION_PURPOSES = ("test_iwae", "test_elbo", "mutual_information")


class Evaluator:
    """The compiled evaluation of one model on one dataset's test split: the evaluators of
    ``vae_jax.evaluation.evaluators``, built from keyword arguments (never a config:
    ``adapter.evaluator_options(config)`` reads the run's), run in order, timed and reported
    in ``report_schema``'s layout.

    ``vae`` is the model in its evaluation precision (``adapter.evaluation_vae_from_config``),
    ``compute_dtype`` that precision's name, as the report records it. The bound is compiled
    once, timed apart from its first batch, and reused for every run; ``timings`` holds the
    seconds of each phase of the latest ``evaluate`` and ``figures``.
    """

    def __init__(
        self,
        vae,
        dataset,
        *,
        num_importance_samples: int,
        chunk_size: int,
        batch_size: int,
        num_elbo_samples: int,
        num_figure_examples: int,
        num_bins: int,
        compute_dtype: str,
    ):
        self.vae, self.dataset = vae, dataset
        self.k, self.chunk, self.batch = num_importance_samples, chunk_size, batch_size
        self.compute_dtype = compute_dtype
        test, preprocessing = dataset.test, dataset.preprocessing
        common = dict(vae=vae, preprocessing=preprocessing, images=test.images)
        self.test_nll = evaluators.TestNLL(
            **common, image_shape=dataset.image_shape, num_importance_samples=self.k,
            chunk_size=self.chunk, batch_size=self.batch,
        )  # fmt: skip
        self.test_elbo = evaluators.TestELBO(
            **common, num_samples=num_elbo_samples, batch_size=self.batch
        )
        self.latents = evaluators.LatentDiagnostics(**common, batch_size=self.batch)
        self.plots = evaluators.Figures(
            **common, labels=test.labels, num_examples=num_figure_examples,
            num_bins=num_bins, batch_size=self.batch,
        )  # fmt: skip
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def _timed(self, phase: str):
        started = time.perf_counter()
        yield
        self.timings[phase] = time.perf_counter() - started

    def evaluate(self, params, seed: int, *, description: str = "test NLL") -> dict:
        """All numbers for the parameters of the run with this seed (its keys)."""
        streams = rng.make_streams(seed)
        keys = {p: rng.eval_key(streams.eval, p) for p in EVALUATION_PURPOSES}
        self.timings = {k: v for k, v in self.timings.items() if k.startswith("compile")}
        if not self.test_nll.compiled:
            with self._timed("compile_test_nll_bound"):
                self.test_nll.compile(params, keys["test_iwae"])
        num_examples = self.dataset.test.num_examples
        progress = Progress(num_examples, unit="example", description=f"{description} (K={self.k})")
        try:
            with self._timed("test_nll_bound"):
                test_nll = self.test_nll.run(params, keys["test_iwae"], on_batch=progress.update)
        finally:
            progress.close()
        with self._timed("test_elbo"):
            test_elbo, kl_per_dim = self.test_elbo.run(params, keys["test_elbo"])
        with self._timed("latent_diagnostics"):
            latent, layers = self.latents.run(
                params, keys["mutual_information"], kl_per_dim=kl_per_dim
            )
        return report_schema.measured_part(
            num_examples=num_examples,
            compute_dtype=self.compute_dtype,
            num_importance_samples=self.k,
            importance_chunk_size=self.chunk,
            seed=seed,
            purposes=keys,
            test_nll=test_nll,
            test_elbo=test_elbo,
            latent=latent,
            layers=layers,
            data=report_schema.data_part(self.dataset),
        )

    def figures(self, params, seed: int, workdir: Path, out_dir: Path | None = None) -> list[str]:
        """The figures of the run in ``workdir``, with keys from its ``eval`` stream, in
        ``<out_dir>/figures`` (default: the workdir's)."""
        with self._timed("figures"):
            return self.plots.run(
                params,
                rng.eval_key(rng.make_streams(seed).eval, "figures"),
                records=read_metrics(Path(workdir)),
                folder=Path(out_dir or workdir) / files.FIGURES_DIR,
            )


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
            **adapter.evaluator_options(config),
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
    result = report_schema.checkpoint_part(step=int(state.step), epoch=int(record["epoch"]))
    result.update(evaluator.evaluate(state.params, seed))
    for name, evaluate_section in (sections or {}).items():
        result[name] = evaluate_section(state.params, seed)
    try:
        paths = evaluator.figures(state.params, seed, workdir, out_dir) if make_figures else None
        result.update(
            report_schema.closing_part(
                figures=paths, seconds=time.perf_counter() - started, timings=evaluator.timings
            )
        )
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


# Kept for their callers; the sections are spelled in ``report_schema``.
def _nll_summary(iwae: np.ndarray, vae, dataset) -> dict:
    return report_schema.nll_section(
        iwae, likelihood=vae.likelihood, image_shape=dataset.image_shape
    )
