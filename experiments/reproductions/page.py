"""The reproduced table as lines, a figure, ``reproductions.md`` and its JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from experiments.reproductions import rows as rows_lib

# What differs from the papers' code, and why; each line is said once on the page.
DIFFERENCES = (
    "**Random draws.** Our keys, not PyTorch's or numpy's: the training images are "
    "binarized afresh at every step from the run's `data` stream, the validation and test "
    "images once with `data.binarization_seed` (theirs: `np.random.seed(777)`), and batches "
    "are shuffled by a keyed permutation. Same distributions, other draws: a different "
    "binarization of the same test images moves the NLL by the order of its standard error.",
    "**Initial biases.** Flax starts every bias at zero; PyTorch draws them from "
    "U(±1/sqrt(fan_in)). The kernels follow the code: He-normal for every dense layer "
    "(`he_init`), the framework's default for convolutions (LeCun normal here, PyTorch's "
    "Kaiming-uniform there).",
    "**Adam's epsilon.** optax adds eps to the square root of the bias-corrected second "
    "moment, PyTorch to the uncorrected one: the updates differ by terms of size eps "
    "(tests/test_optimizers.py checks five steps of `AdamNormGrad` to 1e-6).",
    "**Seeds.** The paper's ± is over its runs; where we ran one seed, the row's interval "
    "is the test estimate's standard error only, not the spread over training runs.",
    "**Precision and hardware.** float32 on CPU here (XLA), float32 on a GPU there (cuDNN): "
    "the same arithmetic up to summation order.",
)


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ours(row: dict) -> str:
    if row["ours_interval_95"] is not None:
        return f"{row['ours']:.2f} ± {row['ours_interval_95']:.2f} ({row['num_seeds']} seeds)"
    error = row["seeds"][0]["test_nll_standard_error"]
    return f"{row['ours']:.2f} (1 seed; test s.e. {error:.2f})"


def _stopping(row: dict) -> str:
    parts = []
    for seed in row["seeds"]:
        if seed["stopped_early"]:
            parts.append(f"epoch {seed['epochs_trained']} (best {seed['best_epoch']})")
        else:
            parts.append(
                f"not reached: {seed['epochs_trained']} of {rows_lib.PROTOCOL_EPOCHS} epochs "
                f"(best {seed['best_epoch']})"
            )
    return "; ".join(parts)


def _published(row: dict) -> str:
    if row["published"] is None:
        return "not named (see the config)"
    return f"{row['published']:.2f} ± {row['published_plus_minus']:.2f}"


def _difference(row: dict) -> str:
    return "–" if row["difference"] is None else f"{row['difference']:+.2f}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _budget(row: dict) -> str:
    if not row["budget"]:
        return "the paper's"
    seed = row["seeds"][0]
    parts = []
    if "training" in row["budget"]:
        parts.append(_plural(seed["max_epochs"], "epoch"))
    if "training images" in row["budget"]:
        parts.append(f"{seed['train_images']} training images")
    if "test images" in row["budget"]:
        parts.append(f"{seed['test_images']} test images")
    if "importance samples" in row["budget"]:
        parts.append(f"K={seed['importance_samples']}")
    return "**budget: " + ", ".join(parts) + "**"


def _hours(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def _wall(row: dict) -> str:
    train = sum(s["train_seconds"] for s in row["seeds"])
    evaluation = sum(s["evaluation_seconds"] or 0.0 for s in row["seeds"])
    return f"{_hours(train)} + {_hours(evaluation)}"


def summary_lines(results: dict) -> list[str]:
    lines = []
    for row in results["rows"]:
        lines.append(
            f"{row['label']}: published {_published(row)}, ours {_ours(row)}, "
            f"difference {_difference(row)}"
            + (f" [{_budget(row).strip('*')}]" if row["budget"] else "")
        )
    return lines


def table(results: dict) -> str:
    lines = [
        "| model | published | ours | difference | early stopping ended | budget | "
        "wall time (train + test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['label']} | {_published(row)} | "
            f"{_ours(row)} | {_difference(row)} | {_stopping(row)} | {_budget(row)} | "
            f"{_wall(row)} |"
        )
    return "\n".join(lines)


def epoch_estimates(results: dict) -> str:
    """Each row's protocol epoch: the benchmark's estimate on a quiet machine (its step
    against the floor) and the runs' own median, and what the protocol's bounds take."""
    benchmark = results.get("benchmark", {}).get("rows", {})
    lines = [
        "| model | step / floor (benchmark) | epoch, benchmark (s) | epoch, in the run (s) | "
        "100 epochs (warm-up) | 2,000 epochs (the cap) |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        measured = benchmark.get(row["name"], {})
        estimate = measured.get("protocol_epoch_seconds")
        in_run = row["seeds"][0]["median_epoch_seconds"]
        epoch = estimate or in_run
        lines.append(
            f"| {row['label']} | {_number(measured.get('step_over_floor'))} | "
            f"{_number(estimate, 1)} | {_number(in_run, 1)} | "
            f"{_hours(epoch * 100 if epoch else None)} | "
            f"{_hours(epoch * rows_lib.PROTOCOL_EPOCHS if epoch else None)} |"
        )
    return "\n".join(lines)


def figure(results: dict, path: Path) -> Path:
    """Left: ours minus published per row, with both intervals, on an axis linear within
    1 nat and logarithmic beyond (a tenth of a nat and a budget row's hundreds both show).
    Right: the validation ELBO of each run per epoch."""
    rows = results["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.6 * len(rows) + 3))
    named = [(p, r) for p, r in enumerate(rows) if r["published"] is not None]
    left.axvline(0.0, color="0.6", linewidth=0.8)
    left.errorbar([0.0] * len(named), [p + 0.15 for p, _ in named],
                  xerr=[r["published_plus_minus"] for _, r in named], fmt="s", capsize=3,
                  label="published (± over its runs)")  # fmt: skip
    ours_error = [
        r["ours_interval_95"] if r["ours_interval_95"] is not None
        else r["seeds"][0]["test_nll_standard_error"]
        for _, r in named
    ]  # fmt: skip
    differences = [r["ours"] - r["published"] for _, r in named]
    left.errorbar(differences, [p - 0.15 for p, _ in named], xerr=ours_error, fmt="o",
                  capsize=3, label="ours (± its interval)")  # fmt: skip
    for (position, _), difference in zip(named, differences, strict=True):
        left.annotate(f"{difference:+.2f}", (difference, position - 0.15), fontsize=8,
                      textcoords="offset points", xytext=(0, 6), ha="center")  # fmt: skip
    left.set_xscale("symlog", linthresh=1.0)
    left.set_yticks(list(range(len(rows))))
    left.set_yticklabels([r["label"] + (" (budget)" if r["budget"] else "") for r in rows])
    left.invert_yaxis()
    left.set_xlabel("ours minus published test NLL (nats; linear within ±1, log beyond)")
    left.legend(fontsize=8)
    lowest, highest = [], []
    for row in rows:
        for seed in row["seeds"]:
            curve = seed["validation_curve"]
            if curve:
                epochs, elbos = zip(*curve, strict=True)
                losses = [-e for e in elbos]
                right.plot(epochs, losses, label=row["label"], linewidth=1, marker=".",
                           markersize=2)  # fmt: skip
                lowest.append(min(losses))
                if len(losses) >= 10:  # runs of a few epochs would set the scale alone
                    highest.append(sorted(losses)[len(losses) // 2])  # the median: past the start
    if lowest:
        right.set_ylim(min(lowest) - 2, max(highest or lowest) + 5)
    right.set_xlabel("epoch")
    right.set_ylabel("validation -ELBO (nats)")
    right.legend(fontsize=7)
    right.set_title("validation bound per epoch (selection uses it only)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(results: dict, figure_name: str, json_name: str) -> str:
    findings = []
    for row in results["rows"]:
        if row["published"] is None:
            findings.append(f"- **{row['label']}**: no published number named in its config.")
        elif row["budget"]:
            findings.append(
                f"- **{row['label']}** ran on a smaller budget than the paper's "
                f"({_budget(row).strip('*').removeprefix('budget: ')}): its number is not a "
                "reproduction, only where the run stood."
            )
        elif row["within_intervals"]:
            findings.append(
                f"- **{row['label']}**: {row['difference']:+.2f} nats from the published "
                "number, within the two intervals."
            )
        else:
            findings.append(
                f"- **{row['label']}**: {row['difference']:+.2f} nats from the published "
                "number, outside the two intervals; see the notes below."
            )
    notes = results.get("notes", [])
    return "\n".join(
        [
            "# A published table reproduced: Exemplar VAE's Fashion-MNIST column",
            "",
            f"Source: {results['source']}. Its setting is Tomczak & Welling's VampPrior code, "
            "read in `jmtomczak/vae_vampprior` and `sajadn/Exemplar-VAE`; every detail of the "
            "protocol is in `experiments/configs/reproduce/protocol.py`, one config per row "
            "beside it. Model selection and early stopping use the validation split only; "
            "each run's test set is evaluated once, at its best validation epoch.",
            "",
            "```",
            results["command"],
            "```",
            "",
            f"Machine: {results['machine']}.",
            "",
            table(results),
            "",
            f"![published against ours, and the validation curves]({figure_name})",
            "",
            "## What the rows show",
            "",
            *findings,
            "",
            *(["## Notes", "", *notes, ""] if notes else []),
            "## Epoch times here",
            "",
            "The benchmark (`python scripts/benchmark.py --sections=reproduction "
            "--rows=...`, on the machine above with nothing else running) times each row's "
            "training step against its floor (its matrix products, counted in the step's "
            "jaxpr, at the float32 matrix-product rate, plus one optimizer update and the "
            "binarization's random bits) and estimates a 50,000-image epoch; the runs' own "
            "median epoch (validation included) is beside it, slower where other runs shared "
            "the machine. The time columns use the benchmark's estimate where there is one.",
            "",
            epoch_estimates(results),
            "",
            "## What differs from the papers' code",
            "",
            *[f"- {line}" for line in DIFFERENCES],
            "",
            "## The MNIST column",
            "",
            "The same rows on dynamically binarized MNIST (published in the same table) are "
            "configs for a machine with internet and an accelerator, not run here: "
            "`experiments/configs/reproduce/mnist_*.py`, with `--rows` of the same names "
            "after `python scripts/prepare_data.py --dataset=mnist --source=tfds`.",
            "",
            f"Every number above, per seed, is in [{json_name}]({json_name}).",
            "",
        ]
    )


def write(results: dict, workdir: Path, docs: Path | None) -> list[Path]:
    """``reproductions.{json,md,png}`` in ``workdir``, and copies at ``docs`` (the page)
    with its JSON and figure beside it."""
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = workdir / "reproductions.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    figure_path = figure(results, workdir / "reproductions.png")
    page = workdir / "reproductions.md"
    page.write_text(markdown(results, figure_path.name, json_path.name))
    written = [json_path, figure_path, page]
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        targets = (docs.with_suffix(".json"), docs.with_suffix(".png"))
        for source, target in zip((json_path, figure_path), targets, strict=True):
            shutil.copyfile(source, target)
        docs.write_text(markdown(results, targets[1].name, targets[0].name))
        written += [*targets, docs]
    return written
