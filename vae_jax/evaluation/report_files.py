"""Evaluation results as files and as lines on the screen: report.json, report.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vae_jax.evaluation import ais_evaluation
from vae_jax.run import files


def _format(value, digits=3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mutual_information(latent: dict) -> str:
    """The I(x;z) estimate beside its ceiling log N, and whether it is saturated there."""
    ceiling = _format(latent["mutual_information_upper_bound_log_n"])
    saturated = ", saturated" if latent["mutual_information_saturated"] else ""
    return f"{_format(latent['mutual_information_nats'])} (ceiling log N = {ceiling}{saturated})"


def summary_rows(result: dict) -> list[tuple[str, str]]:
    nll, elbo, latent = result["test_nll"], result["test_elbo"], result["latent"]
    checkpoint = result["checkpoint"]
    rows = [
        ("checkpoint", f"step {checkpoint['step']} (epoch {checkpoint['epoch']})"),
        ("test examples", str(result["num_examples"])),
        (
            f"test NLL, K={result['num_importance_samples']} (nats)",
            f"{_format(nll['nats'])} ± {_format(nll['standard_error'])}",
        ),
    ]  # fmt: skip
    if "bits_per_dim" in nll:
        rows.append(("test NLL (bits/dim)", _format(nll["bits_per_dim"], 4)))
    rows += ais_evaluation.summary_rows(result)  # AIS and BDMC, when evaluated
    rows += [
        ("test ELBO (nats)", f"{_format(elbo['elbo'])} ± {_format(elbo['standard_error'])}"),
        ("  E_q log p(x|z)", _format(elbo["log_likelihood"])),
        ("  KL(q(z|x) || p(z))", _format(elbo["kl"])),
        ("active units", f"{latent['active_units']} / {latent['dimensions']}"),
        ("mutual information I(x;z) (nats)", _mutual_information(latent)),
    ]
    for layer in result.get("layers") or ():
        rows.append(
            (
                f"  layer z_{layer['layer']}: active units, KL (nats)",
                f"{layer['active_units']} / {layer['dimensions']}, {_format(layer['kl'])}",
            )
        )
    described = latent.get("posterior_described", "q(z|x)")
    if described != "q(z|x)":
        rows.append(("  (active units and I(x;z) of)", described))
    rows += [
        ("binarization", str(result["data"]["protocol"]["binarization"])),
        ("networks' products", result.get("compute_dtype", "float32")),
        ("test data sha256", result["data"]["fingerprint_sha256"]["test"][:16] + "…"),
    ]
    return rows


def markdown(result: dict) -> str:
    lines = ["# Evaluation", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in summary_rows(result)]
    lines += ["", "± is one standard error over test examples.", ""]
    latent = result["latent"]
    lines += [
        "I(x;z) is estimated with the aggregate posterior of the N test examples, so it is",
        "at most log N; saturated means "
        f"{latent['mutual_information_saturated_rule']}: each code is told apart from the "
        "other N - 1, and the number measures N more than the information in the code.",
        "",
    ]
    if result.get("figures"):
        lines += ["## Figures", ""]
        lines += [f"![{Path(p).stem}](figures/{Path(p).name})" for p in result["figures"]]
        lines.append("")
    return "\n".join(lines)


def write_evaluation(
    workdir: Path, result: dict, *, quiet: bool = False, rebuild: Callable[[], dict] | None = None
) -> None:
    """Merges ``result`` into report.json, writes report.md, and prints the summary. A
    damaged report.json is set aside and its training part rebuilt with ``rebuild()``."""
    report_path = workdir / files.REPORT_FILE
    if files.set_aside_if_damaged(report_path, "written anew with this evaluation"):
        report = rebuild() if rebuild else {"status": "partial"}
    elif report_path.exists():
        report = files.read_json(report_path)
    else:
        report = {"status": "partial"}
    report["evaluation"] = result
    files.write_json(report_path, report)
    files.write_text(workdir / files.REPORT_MARKDOWN, markdown(result))
    if quiet:
        return
    width = max(len(name) for name, _ in summary_rows(result))
    for name, value in summary_rows(result):
        print(f"{name:<{width}}  {value}")
    print(f"report: {report_path}")
    print(f"        {workdir / files.REPORT_MARKDOWN}")
    for path in result.get("figures", []):
        print(f"figure: {path}")
