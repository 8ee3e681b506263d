"""Reproduce Exemplar VAE's Fashion-MNIST column (Norouzi et al., 2020, Table 1): train each
row's seeds to their stopping point (or a stated budget), evaluate them on the test set and
write the table, its JSON and a figure.

    python -m experiments.reproductions --workdir=runs/reproduce \\
        --docs=docs/reproductions.md

Rows (configs under experiments/configs/reproduce/): fashion_vae, fashion_vampprior,
fashion_hvae, fashion_hvae_vampprior, fashion_convhvae, fashion_convhvae_vampprior.
Budgets for machines that cannot run a row's whole protocol, each marked on the page:

    --max_epochs=fashion_hvae:200 --train_images=fashion_convhvae:6000 \\
    --test_images=fashion_convhvae:500 --importance_samples=fashion_convhvae:100

A row's run that is finished is left as it is; an unfinished one resumes (a larger
--max_epochs, or none, continues a budget run toward its stopping point).
"""

import json
from pathlib import Path

from absl import flags

from experiments.reproductions import experiment, page
from experiments.reproductions import rows as rows_lib
from vae_jax.errors import ConfigError
from vae_jax.run import cli

_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "Where the rows' runs go.")
_ROWS = flags.DEFINE_list("rows", [r.name for r in rows_lib.ROWS], "Rows to train and report.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds of every row (one run each).")
_MAX_EPOCHS = flags.DEFINE_list("max_epochs", [], "row:N, a budget below the protocol's 2,000.")
_TEST_IMAGES = flags.DEFINE_list("test_images", [], "row:N, the first N test images only.")
_SAMPLES = flags.DEFINE_list("importance_samples", [], "row:K, K below the protocol's 5,000.")
_TRAIN_IMAGES = flags.DEFINE_list(
    "train_images", [], "row:N, the first N training-file images (1/6 of them validation)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: the configs').")
_DOCS = flags.DEFINE_string("docs", None, "Also write the page here (docs/reproductions.md).")
_NOTES = flags.DEFINE_string("notes", None, "A markdown file of notes on the rows, for the page.")
_BENCHMARK = flags.DEFINE_string(
    "benchmark", None, "JSON of scripts/benchmark.py --sections=reproduction: its estimates."
)


def _command() -> str:
    parts = ["python -m experiments.reproductions", f"--workdir={_WORKDIR.value}"]
    if _ROWS.value != [r.name for r in rows_lib.ROWS]:
        parts.append(f"--rows={','.join(_ROWS.value)}")
    if _SEEDS.value != ["0"]:
        parts.append(f"--seeds={','.join(_SEEDS.value)}")
    for flag in (_MAX_EPOCHS, _TRAIN_IMAGES, _TEST_IMAGES, _SAMPLES):
        if flag.value:
            parts.append(f"--{flag.name}={','.join(flag.value)}")
    if _DATA_DIR.value:
        parts.append(f"--data_dir={_DATA_DIR.value}")
    if _DOCS.value:
        parts.append(f"--docs={_DOCS.value}")
    if _NOTES.value:
        parts.append(f"--notes={_NOTES.value}")
    if _BENCHMARK.value:
        parts.append(f"--benchmark={_BENCHMARK.value}")
    return " ".join(parts)


def _budgets() -> dict[str, experiment.Budget]:
    epochs = experiment.parse_row_values(_MAX_EPOCHS.value, "max_epochs")
    images = experiment.parse_row_values(_TEST_IMAGES.value, "test_images")
    samples = experiment.parse_row_values(_SAMPLES.value, "importance_samples")
    train = experiment.parse_row_values(_TRAIN_IMAGES.value, "train_images")
    return {
        name: experiment.Budget(
            epochs.get(name), images.get(name), samples.get(name), train.get(name)
        )
        for name in {*epochs, *images, *samples, *train}
    }


def main(argv):
    del argv
    unknown = [name for name in _ROWS.value if name not in rows_lib.BY_NAME]
    if unknown:
        raise ConfigError(f"--rows: unknown {unknown}; rows: {list(rows_lib.BY_NAME)}")
    try:
        seeds = [int(s) for s in _SEEDS.value]
    except ValueError:
        raise ConfigError(f"--seeds={','.join(_SEEDS.value)} must be integers") from None
    budgets = _budgets()  # every flag checked before any work
    for flag in (_NOTES, _BENCHMARK):
        if flag.value and not Path(flag.value).is_file():
            raise ConfigError(f"--{flag.name}={flag.value}: no such file")
    results = experiment.run(
        Path(_WORKDIR.value), _ROWS.value, seeds, budgets,
        data_dir=_DATA_DIR.value, command=_command(),
    )  # fmt: skip
    if _NOTES.value:
        results["notes"] = Path(_NOTES.value).read_text().strip().splitlines()
    if _BENCHMARK.value:
        measured = json.loads(Path(_BENCHMARK.value).read_text())
        results["benchmark"] = {
            "matmul_gflops": measured.get("matmul_gflops", {}),
            "rows": measured["sections"]["reproduction"],
        }
    for line in page.summary_lines(results):
        print(line)
    docs = Path(_DOCS.value) if _DOCS.value else None
    for path in page.write(results, Path(_WORKDIR.value), docs):
        print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
