"""The runs of one program, as every sweep sees them: which are trained, failed or
evaluated (their reports say), the strategy and device checks, and ``train_and_evaluate_group``,
which trains what is left (``group.train_group``) and evaluates what is not evaluated.
``runner.run_sweep`` and ``grid_runner.run_cells`` build on it.
"""

from __future__ import annotations

from typing import Any

import jax

from vae_jax import adapter
from vae_jax.data import Dataset
from vae_jax.errors import ConfigError
from vae_jax.evaluation import evaluate_run as evaluation
from vae_jax.run import files, loading
from vae_jax.sweep import strategies
from vae_jax.sweep.group import Member, train_group


def report_of(member: Member, *, set_aside: bool = True) -> dict | None:
    """The run's ``report.json`` (None if it has none); a damaged one counts as none and,
    with ``set_aside`` (the run's lock held), is set aside: the run is then resumed from
    its checkpoints and its report written anew."""
    path = member.workdir / files.REPORT_FILE
    if set_aside:
        files.set_aside_if_damaged(path, "the run is resumed from its checkpoints to rebuild it")
    elif files.damage_of(path):
        return None
    return files.read_json(path) if path.exists() else None


def failed(member: Member) -> bool:
    """Whether the run is recorded as stopped by a non-finite value."""
    return (report_of(member) or {}).get("status") == "failed"


def trained(member: Member, *, set_aside: bool = True) -> bool:
    """Whether the run's report says it trained every epoch of its config."""
    report = report_of(member, set_aside=set_aside) or {}
    return report.get("epochs_completed") == member.config.training.num_epochs and (
        report.get("status") != "failed"
    )


def evaluated(member: Member, k: int) -> bool:
    """Whether the run's report holds the test bounds of its final step at this K."""
    report = report_of(member) or {}
    done = report.get("evaluation", {})
    same_step = done.get("checkpoint", {}).get("step") == report.get("steps")
    return same_step and done.get("num_importance_samples") == k and "stale" not in done


def retry(member: Member) -> None:
    """Sets a failed run's report aside, so that it resumes from its last good checkpoint."""
    path = member.workdir / files.REPORT_FILE
    aside = path.with_name(f"{files.REPORT_FILE}.failed")
    path.replace(aside)
    print(f"{member.label}: retrying (its failure is kept in {aside})")


def check_strategy(config, strategy: str, num_runs: int) -> None:
    """The strategy and the device settings, before any work."""
    if strategy not in strategies.STRATEGIES:
        raise ConfigError(f"--strategy={strategy!r} is not one of {list(strategies.STRATEGIES)}")
    if config.runtime.num_devices > 1:
        raise ConfigError(
            f"runtime.num_devices={config.runtime.num_devices}: a sweep does not split batches "
            "over devices; it puts seeds on devices with --strategy=shard (leave it at 0)"
        )
    if strategy == "shard" and num_runs % jax.device_count():
        raise ConfigError(
            f"--strategy=shard: {num_runs} runs do not divide over {jax.device_count()} devices"
        )


def check_no_early_stopping(config) -> None:
    """Seeds in one program train the same epochs; a seed stopping early alone is not
    supported yet (train each seed as its own run: ``experiments.train --config.seed``)."""
    patience = config.training.early_stopping_patience
    if patience:
        raise ConfigError(
            f"training.early_stopping_patience={patience}: sweeps do not stop seeds early yet; "
            "train each seed as its own run (experiments.train), or set it to 0"
        )


def train_and_evaluate_group(
    config,
    dataset: Dataset,
    members: list[Member],
    strategy: str,
    evaluate: bool,
    num_importance_samples: int | None,
    *,
    description: str,
    retry_failed: bool = False,
) -> str:
    """Trains the runs of one program that are not done and evaluates those not
    evaluated: a sweep started again does only what is left (its other runs are read,
    not rewritten). Runs recorded as failed are left alone unless ``retry_failed``.
    Returns "complete", or "stopped" (SIGTERM)."""
    if retry_failed:
        for member in members:
            if failed(member):
                retry(member)
    to_train = [m for m in members if not trained(m) and not failed(m)]
    if to_train:
        chosen, _ = resolve_strategy(strategy, len(to_train))
        result = train_group(config, dataset, to_train, chosen, description)
        if result.status != "complete":
            return result.status
    for member in members:
        if failed(member):
            print(f"{member.label}: failed: {report_of(member)['reason']}")
    if evaluate:
        k, _, _ = evaluation.resolve_options(config.evaluation, num_importance_samples, None, None)
        pending = [m for m in members if not failed(m) and not evaluated(m, k)]
        if pending:
            states = [loading.load_state(m.workdir)[1] for m in pending]
            evaluate_runs(
                config, dataset, list(zip(pending, states, strict=True)), num_importance_samples
            )
    return "complete"


def resolve_strategy(strategy: str, num_runs: int) -> tuple[str, str]:
    """The strategy that runs here (``auto`` resolved) and why."""
    return strategies.resolve(
        strategy, backend=jax.default_backend(), device_count=jax.device_count(),
        num_runs=num_runs,
    )  # fmt: skip


def evaluate_runs(config, dataset: Dataset, runs: list[tuple[Member, Any]], num_importance_samples):
    """Evaluates each ``(member, train state)`` (one compiled evaluator for all, all of one
    program's runs) into the member's report."""
    k, chunk, batch = evaluation.resolve_options(
        config.evaluation, num_importance_samples, None, None
    )
    evaluator = evaluation.Evaluator(
        adapter.evaluation_vae_from_config(config, dataset.image_shape),
        dataset,
        **adapter.evaluator_options(config),
        num_importance_samples=k,
        chunk_size=chunk,
        batch_size=batch,
    )
    for member, state in runs:
        record = {"epoch": config.training.num_epochs, "seed": member.config.seed}
        result = evaluation.evaluate_and_report(
            evaluator, member.workdir, state, record, quiet=True
        )
        print(f"{member.label}: test NLL {result['test_nll']['nats']:.3f} "
              f"± {result['test_nll']['standard_error']:.3f} nats (K={k})")  # fmt: skip
