"""Train and evaluate every model of the table (one seed sweep each), then write the table.

Each model's configs are checked against the data before any model trains. A model whose
every seed has trained these epochs and is evaluated at this K is not run again, so an
interrupted command picks up where it stopped (the sweeps resume from their checkpoints;
more epochs continue the runs)."""

from __future__ import annotations

import os
from pathlib import Path

import jax
from absl import logging

from experiments.results import models as results_models
from experiments.results import table
from vae_jax import config_checks
from vae_jax.run import files
from vae_jax.sweep.runner import run_sweep

RESULTS_JSON = "results.json"
FIGURE = "results.png"


def model_configs(base_config, chosen, *, epochs, train_examples, test_examples) -> list:
    """Each model's config, every one checked (against the data too) before any work."""
    configs = []
    for model in chosen:
        config = results_models.model_config(
            base_config, model, epochs=epochs, train_examples=train_examples,
            test_examples=test_examples,
        )  # fmt: skip
        config_checks.check_all(config)
        configs.append(config)
    return configs


def run_results(
    base_config,
    workdir: str | Path,
    *,
    model_names: list[str],
    seeds: list[int],
    epochs: int,
    num_importance_samples: int,
    train_examples: int = 0,
    test_examples: int = 0,
    base_config_name: str = "",
    command: str = "",
) -> dict:
    """Runs (or finishes) every model's sweep and returns the table's contents."""
    workdir = files.workdir_path(workdir)
    chosen = results_models.select(model_names)
    configs = model_configs(
        base_config, chosen, epochs=epochs, train_examples=train_examples,
        test_examples=test_examples,
    )  # fmt: skip
    rows = []
    for number, (model, config) in enumerate(zip(chosen, configs, strict=True), start=1):
        model_dir = workdir / model.name
        if table.is_evaluated(model_dir, seeds, num_importance_samples, epochs):
            logging.info("model %d/%d %s: already evaluated", number, len(chosen), model.name)
        else:
            logging.info("model %d/%d %s: %s", number, len(chosen), model.name, model.label)
            outcome = run_sweep(
                config, model_dir, seeds, num_importance_samples=num_importance_samples
            )
            if outcome["status"] != "complete":
                raise SystemExit(75)  # stopped (SIGTERM): run the command again to resume
        rows.append(table.model_results(model_dir, model, seeds))
    return {
        "command": command,
        "setup": {
            "base_config": base_config_name,
            "seeds": seeds,
            "epochs": epochs,
            "num_importance_samples": num_importance_samples,
            "train_examples": configs[0].data.limit_train,
            "test_examples": configs[0].data.limit_test,
            "machine": _machine(),
            "commits": sorted({row["commit"] for row in rows}),
            "jax": jax.__version__,
        },
        "models": rows,
    }


def _machine() -> str:
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", device.platform)
    return f"{jax.device_count()} {device.platform} device(s) ({kind}), {os.cpu_count()} CPU cores"


def write(results: dict, workdir: Path, docs: Path | None, notes: str = "") -> list[Path]:
    """results.json, the figure and the page in the workdir, and the page (with its JSON
    and figure beside it) at ``docs`` if given."""
    folders = [Path(workdir)] + ([Path(docs).parent] if docs else [])
    written = []
    for folder in folders:
        page = Path(docs) if docs and folder == Path(docs).parent else folder / "results.md"
        folder.mkdir(parents=True, exist_ok=True)
        files.write_json(folder / RESULTS_JSON, results)
        table.figure(results, folder / FIGURE)
        page.write_text(table.markdown(results, figure_name=FIGURE, notes=notes))
        written.append(page)
    return written
