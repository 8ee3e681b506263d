"""The results as lines, a figure, ``likelihoods.md`` and (with ``--docs``) the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _pm(mean: float, error: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f} ± {error:.{digits}f}"


def summary_lines(results: dict) -> list[str]:
    iwae = results["iwae"]
    lines = [f"IWAE K={iwae['num_importance_samples']}: NLL "
             f"{_pm(iwae['nll_nats'], iwae['standard_error'])} nats"]  # fmt: skip
    for row in results["ais"]:
        gap = row["iwae_minus_ais_nats"]
        lines.append(
            f"AIS T={row['options']['num_steps']}: NLL "
            f"{_pm(row['nll_nats'], row['standard_error'])}, IWAE minus AIS "
            f"{_pm(gap['mean'], gap['standard_error'], 3)}, acceptance "
            f"{row['acceptance_rate']['mean']:.2f}, {row['seconds']['ais']:.0f} s"
        )
    for row in results["bdmc"]:
        lines.append(
            f"BDMC T={row['options']['num_steps']}: log p(x) in "
            f"[{row['lower_log_px']['mean']:.2f}, {row['upper_log_px']['mean']:.2f}], gap "
            f"{_pm(row['gap_nats']['mean'], row['gap_nats']['standard_error'], 3)}"
        )
    return lines


def figure(results: dict, path: Path) -> Path:
    """Left: the IWAE NLL minus the AIS NLL on the same images (paired) against AIS steps.
    Right: BDMC's bracket (reverse minus forward AIS) on simulated data against steps."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [row["options"]["num_steps"] for row in results["ais"]]
    gaps = [row["iwae_minus_ais_nats"] for row in results["ais"]]
    left.errorbar(steps, [g["mean"] for g in gaps], yerr=[g["standard_error"] for g in gaps],
                  marker="o", capsize=3)  # fmt: skip
    left.axhline(0.0, color="gray", linewidth=1)
    left.set_xscale("log")
    left.set_xlabel("AIS steps T")
    left.set_ylabel("IWAE NLL minus AIS NLL (nats)")
    left.set_title(
        f"{results['num_test_images']} test images, IWAE at "
        f"K={results['iwae']['num_importance_samples']}"
    )
    steps = [row["options"]["num_steps"] for row in results["bdmc"]]
    gaps = [row["gap_nats"] for row in results["bdmc"]]
    right.errorbar(steps, [g["mean"] for g in gaps], yerr=[g["standard_error"] for g in gaps],
                   marker="o", capsize=3)  # fmt: skip
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("AIS steps T")
    right.set_ylabel("reverse minus forward AIS (nats)")
    right.set_title(f"BDMC gap, {results['bdmc'][0]['num_examples']} simulated examples")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ais_table(results: dict) -> str:
    iwae = results["iwae"]
    lines = [
        "| estimator | test NLL (nats) | IWAE minus it (paired) | HMC acceptance | seconds |",
        "|---|---|---|---|---|",
        f"| IWAE bound, K = {iwae['num_importance_samples']} | "
        f"{_pm(iwae['nll_nats'], iwae['standard_error'])} | 0 | | {iwae['seconds']:.0f} |",
    ]
    for row in results["ais"]:
        gap, acceptance = row["iwae_minus_ais_nats"], row["acceptance_rate"]
        lines.append(
            f"| AIS, T = {row['options']['num_steps']} | "
            f"{_pm(row['nll_nats'], row['standard_error'])} | "
            f"{_pm(gap['mean'], gap['standard_error'], 3)} | {acceptance['mean']:.2f} "
            f"({acceptance['min']:.2f} to {acceptance['max']:.2f}) | {row['seconds']['ais']:.0f} |"
        )
    return "\n".join(lines)


def _bdmc_table(results: dict) -> str:
    lines = [
        "| AIS steps T | forward AIS (lower) | reverse AIS (upper) | gap (upper - lower) "
        "| largest gap | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["bdmc"]:
        lower, upper, gap = row["lower_log_px"], row["upper_log_px"], row["gap_nats"]
        lines.append(
            f"| {row['options']['num_steps']} | {_pm(lower['mean'], lower['standard_error'])} | "
            f"{_pm(upper['mean'], upper['standard_error'])} | "
            f"{_pm(gap['mean'], gap['standard_error'], 3)} | {row['max_gap_nats']:.3f} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _findings(results: dict) -> list[str]:
    """Sentences read off the numbers (nothing here is assumed)."""
    last = results["ais"][-1]
    gap = last["iwae_minus_ais_nats"]
    t = last["options"]["num_steps"]
    if gap["mean"] > 2 * gap["standard_error"]:
        ais_sentence = (
            f"On these {results['num_test_images']} test images at T = {t}, AIS puts the NLL "
            f"{gap['mean']:.2f} ± {gap['standard_error']:.2f} nats below the IWAE bound at "
            f"K = {results['iwae']['num_importance_samples']}: the bound overstates this "
            "model's NLL by about that much."
        )
    else:
        ais_sentence = (
            f"At T = {t}, AIS and the IWAE bound at K = "
            f"{results['iwae']['num_importance_samples']} differ by {gap['mean']:.3f} ± "
            f"{gap['standard_error']:.3f} nats: within two standard errors of each other."
        )
    bdmc = results["bdmc"][-1]
    bdmc_sentence = (
        f"On data simulated from the model, the BDMC bracket at T = "
        f"{bdmc['options']['num_steps']} is {bdmc['gap_nats']['mean']:.3f} ± "
        f"{bdmc['gap_nats']['standard_error']:.3f} nats wide on average (largest "
        f"{bdmc['max_gap_nats']:.3f}): on such data, forward AIS with that many steps is on "
        "average within that of log p(x). On real test images the same holds only as far "
        "as they resemble the model's samples (Wu et al., 2017)."
    )
    return [ais_sentence, "", bdmc_sentence]


def markdown(results: dict, figure_name: str, json_name: str) -> str:
    model, settings = results["model"], results["settings"]
    when = f"{model['epoch_seconds_total'] / 60:.1f} min of training epochs"
    if model.get("final_validation_elbo") is not None:
        when += f", final validation ELBO {model['final_validation_elbo']:.1f} nats"
    train_images = f"the first {model['train_examples']}" if model["train_examples"] else "all the"
    lines = [
        "# Likelihoods you can trust: AIS and BDMC",
        "",
        "Regenerate this page (training included, on the machine below):",
        "",
        "```",
        results["command"],
        "```",
        "",
        "The test NLL of `report.json` is the importance-weighted bound at K = 5000: a",
        "stochastic upper bound on `-log p(x)` whose gap to the truth is unknown. Annealed",
        "importance sampling (Neal, 2001) with HMC transitions (Wu et al., 2017) moves chains",
        "from `q(z|x)` to the posterior through a sigmoidal schedule of geometric averages;",
        "the log of the mean of its weights is also a stochastic lower bound on `log p(x)`,",
        "which Wu et al. found much tighter for decoder-based models. Bidirectional Monte",
        "Carlo (Grosse et al., 2015) measures how far off it can be: on data simulated from",
        "the model, forward AIS",
        "bounds `log p(x)` from below and reverse AIS, started from the latent that generated",
        "the data (an exact posterior sample), from above.",
        "",
        "`python -m experiments.evaluate --workdir=RUN --estimator=ais --bdmc` adds the same",
        "numbers to any run's `report.json` and `report.md` (flags `--ais_num_steps`,",
        "`--ais_num_chains`, `--ais_leapfrog_steps`, `--ais_num_examples`; config fields",
        "`evaluation.ais_*` in `experiments/configs/base.py`).",
        "",
        "## Budget",
        "",
        f"- Model: `{model['config']}` (the quickstart model), {model['epochs']} epochs on "
        f"{train_images} training images of {model['dataset']} "
        f"({model['binarization']} binarization), seed {model['seed']}; {when}. A budget",
        "  chosen to fit this machine: the numbers describe this model, not the quickstart's",
        "  run or docs/results.md's.",
        f"- Test images: the first {results['num_test_images']}. AIS: "
        f"{settings['num_chains']} chains per image (Wu et al.: 16), "
        f"{settings['leapfrog_steps']} leapfrog steps per transition, step size adapted per "
        "image toward an acceptance rate of 0.65. BDMC: "
        f"{settings['bdmc_examples']} examples simulated from the model.",
        f"- Machine: {results['machine']} (shared with other work; seconds are wall time).",
        "",
        "## IWAE against AIS on test images",
        "",
        _ais_table(results),
        "",
        "± is one standard error over images; the IWAE-minus-AIS column is paired per image",
        "(the NLLs' own errors are mostly the images' spread). Seconds include compiling.",
        "",
        f"![IWAE against AIS and BDMC]({figure_name})",
        "",
        "## BDMC on simulated data",
        "",
        _bdmc_table(results),
        "",
        *_findings(results),
        "",
        f"All numbers: [{json_name}]({json_name}).",
        "",
    ]
    return "\n".join(lines)


def write(results: dict, workdir: Path, docs: Path | None) -> list[Path]:
    """``likelihoods.md`` and ``likelihoods.png`` in ``workdir``; with ``docs`` the page,
    its figure and its JSON beside it."""
    workdir = Path(workdir)
    written = [figure(results, workdir / "likelihoods.png")]
    (workdir / "likelihoods.md").write_text(
        markdown(results, "likelihoods.png", "likelihoods.json")
    )
    written.append(workdir / "likelihoods.md")
    if docs is not None:
        stem = docs.with_suffix("")
        shutil.copyfile(written[0], stem.with_suffix(".png"))
        stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
        docs.write_text(
            markdown(results, stem.with_suffix(".png").name, stem.with_suffix(".json").name)
        )
        written += [docs, stem.with_suffix(".png"), stem.with_suffix(".json")]
    return written
