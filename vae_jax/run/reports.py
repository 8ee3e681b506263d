"""The training part of ``report.json``, built from a run's metrics records: written at the
end of training, and rebuilt by evaluation when the file is damaged."""

from __future__ import annotations


def final_report(
    records: list[dict],
    *,
    seed: int,
    num_parameters: int,
    data_record: dict,
    train_seconds: float,
    compile_seconds: float,
) -> dict:
    """The report of a completed run from its metrics records."""
    final = records[-1] if records else {}
    with_validation = [r for r in records if "validation/elbo" in r]
    best = max(with_validation, key=lambda r: r["validation/elbo"]) if with_validation else None
    return {
        "status": "complete",
        "seed": int(seed),
        "epochs_completed": final.get("epoch", 0),
        "steps": final.get("step", 0),
        "final": final,
        "best_validation": (
            {"epoch": best["epoch"], "validation/elbo": best["validation/elbo"]} if best else None
        ),
        "num_parameters": num_parameters,
        "data": data_record,
        "time": {"train_seconds_this_process": train_seconds, "compile_seconds": compile_seconds},
    }
