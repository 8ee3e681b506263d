"""The grid sweep's table and figures, on fabricated run directories (no training): the
summaries equal numpy/scipy's, the best cell is the argmin/argmax of the means, runs that
are not done are listed and not counted, the markdown and the figures are written."""

from __future__ import annotations

import itertools
import json
import math
import re

import numpy as np
import pytest
from matplotlib import image
from scipy import stats

from vae_jax.run import files
from vae_jax.sweep import grid_table
from vae_jax.sweep.grid import cell_name, cell_workdir

FIELDS = ["objective.beta", "model.latent_dim"]
BETAS = [0.1, 0.5, 2.0]
LATENT_DIMS = [2, 8]
SEEDS = [0, 1, 2]
CELLS = [
    {"name": cell_name(values), "values": values, "group": index}
    for index, values in enumerate(
        {"objective.beta": beta, "model.latent_dim": dim}
        for beta, dim in itertools.product(BETAS, LATENT_DIMS)
    )
]
NAMES = [cell["name"] for cell in CELLS]
EPOCHS = 5

# Per cell (grid order), the centre of each metric: every best is in a middle cell.
CENTRES = {
    "test/nll_nats": [104.0, 103.0, 101.5, 102.0, 99.0, 100.0],  # lowest: cell 4
    "test/elbo": [-106.0, -105.5, -103.0, -104.0, -104.5, -99.0],  # highest: cell 2
    "validation/elbo": [-105.0, -104.0, -103.5, -101.0, -102.5, -99.0],  # highest: cell 3
    "train/elbo": [-104.0, -103.0, -102.5, -100.0, -101.5, -99.0],  # highest: cell 3
    "test/active_units": [3.0, 9.0, 5.0, 6.0, 4.0, 20.0],  # highest: cell 1
    "test/mutual_information_nats": [4.0, 3.0, 2.0, 1.5, 1.0, 9.0],  # highest: cell 0
    "train/kl": [20.0, 21.0, 22.0, 23.0, 24.0, 25.0],  # no direction
}
NOT_TRAINED = {(NAMES[1], 1)} | {(NAMES[5], s) for s in SEEDS}  # cell 5: nothing done
NOT_EVALUATED = (NAMES[4], 2)  # trained; its train/elbo would make cell 4 the best
UNEVALUATED_TRAIN_ELBO = -50.0


def fabricated_metrics(rng, index: int) -> dict[str, float]:
    """One run's flat metrics, as seed_metrics should read them back."""
    m = {name: centre[index] + 0.2 * rng.standard_normal() for name, centre in CENTRES.items()}
    m["test/active_units"] = float(round(m["test/active_units"]))
    m["test/nll_bits_per_dim"] = m["test/nll_nats"] / (784 * math.log(2))
    m["test/kl"] = m["train/kl"] + 0.5
    m["test/log_likelihood"] = m["test/elbo"] + m["test/kl"]
    return m


def write_run(run_dir, m: dict[str, float], *, evaluated: bool, trained: bool = True) -> None:
    """A run directory: metrics.jsonl always; report.json (with "evaluation") if asked."""
    run_dir.mkdir(parents=True)
    records = [
        {
            "epoch": e,
            "step": 10 * e,
            "time/epoch_seconds": 1.0,
            "train/elbo": m["train/elbo"] - 2.0 * (EPOCHS - e),
            "validation/elbo": m["validation/elbo"] - 2.5 * (EPOCHS - e),
        }
        for e in range(1, EPOCHS + 1)
    ]
    (run_dir / files.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    if not trained:
        return
    final = {"epoch": EPOCHS, "step": 10 * EPOCHS, "time/epoch_seconds": 1.0}
    final |= {k: m[k] for k in ("train/elbo", "validation/elbo", "train/kl")}
    report = {"final": final}
    if evaluated:
        report["evaluation"] = {
            "test_nll": {"nats": m["test/nll_nats"], "bits_per_dim": m["test/nll_bits_per_dim"]},
            "test_elbo": {
                "elbo": m["test/elbo"],
                "log_likelihood": m["test/log_likelihood"],
                "kl": m["test/kl"],
            },
            "latent": {
                "active_units": m["test/active_units"],
                "mutual_information_nats": m["test/mutual_information_nats"],
            },
        }
    files.write_json(run_dir / files.REPORT_FILE, report)


@pytest.fixture(scope="module", params=[True, False], ids=["require-evaluation", "training-only"])
def sweep(request, tmp_path_factory):
    """A 3 x 2 grid of 3 seeds, one run not trained, one cell empty, one run not
    evaluated; the table written with or without requiring evaluation. Returns the
    workdir, the table and what each done run's metrics are (as written)."""
    require_evaluation = request.param
    workdir = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(0)
    done = {}
    for (index, name), seed in itertools.product(enumerate(NAMES), SEEDS):
        m = fabricated_metrics(rng, index)
        trained = (name, seed) not in NOT_TRAINED
        evaluated = (name, seed) != NOT_EVALUATED
        if not evaluated:
            m["train/elbo"] = UNEVALUATED_TRAIN_ELBO
        write_run(cell_workdir(workdir, name, seed), m, evaluated=evaluated, trained=trained)
        if trained and evaluated:
            done[name, seed] = m
        elif trained and not require_evaluation:
            done[name, seed] = {k: m[k] for k in ("train/elbo", "validation/elbo", "train/kl")}
    table = grid_table.write_grid_table(
        workdir, FIELDS, CELLS, SEEDS, require_evaluation=require_evaluation
    )
    return workdir, table, done, require_evaluation


def written_values(done: dict, name: str, metric: str) -> list[float]:
    return [done[name, s][metric] for s in SEEDS if (name, s) in done and metric in done[name, s]]


def numpy_summary(values: list[float]) -> tuple[float, float, float]:
    """Mean, std (ddof=1) and the half-width of the Student's t 95% interval."""
    n, std = len(values), float(np.std(values, ddof=1))
    return float(np.mean(values)), std, float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n))


def test_summaries_equal_numpy_and_scipy_over_done_seeds(sweep):
    _, table, done, _ = sweep
    assert [c["name"] for c in table["cells"]] == NAMES
    for cell in table["cells"]:
        name = cell["name"]
        assert cell["seeds_done"] == [s for s in SEEDS if (name, s) in done]
        expected_names = set().union(*(done[k].keys() for k in done if k[0] == name))
        assert set(cell["metrics"]) == expected_names  # no epoch, step or time/ entries
        for metric, row in cell["metrics"].items():
            values = written_values(done, name, metric)
            assert row["per_seed"] == {str(s): done.get((name, s), {}).get(metric) for s in SEEDS}
            assert row["n"] == len(values) >= 2
            mean, std, half = numpy_summary(values)
            np.testing.assert_allclose(row["mean"], mean, rtol=1e-12)
            np.testing.assert_allclose(row["std"], std, rtol=1e-9)
            np.testing.assert_allclose(row["ci95_low"], mean - half, rtol=1e-9)
            np.testing.assert_allclose(row["ci95_high"], mean + half, rtol=1e-9)
    empty = table["cells"][5]
    assert empty["seeds_done"] == []
    assert empty["metrics"] == {}


def test_the_unevaluated_run_counts_only_when_evaluation_is_not_required(sweep):
    _, table, _, require_evaluation = sweep
    train_elbo = table["cells"][4]["metrics"]["train/elbo"]
    assert (UNEVALUATED_TRAIN_ELBO in train_elbo["per_seed"].values()) != require_evaluation
    assert train_elbo["n"] == (2 if require_evaluation else 3)
    assert table["cells"][4]["metrics"]["test/nll_nats"]["n"] == 2
    assert table["cells"][1]["metrics"]["test/nll_nats"]["per_seed"]["1"] is None


@pytest.mark.parametrize(
    ("metric", "pick", "first_is_best"),
    [
        ("test/nll_nats", np.argmin, False),
        ("test/nll_bits_per_dim", np.argmin, False),
        ("test/elbo", np.argmax, False),
        ("validation/elbo", np.argmax, False),
        ("train/elbo", np.argmax, False),
        ("test/active_units", np.argmax, False),
        ("test/mutual_information_nats", np.argmax, True),
    ],
    ids=[
        "nll-lower",
        "bits-lower",
        "test-elbo-higher",
        "val-elbo-higher",
        "train-elbo-higher",
        "active-units-higher",
        "mutual-information-higher-first-cell",
    ],
)
def test_best_cell_is_the_argmin_or_argmax_of_the_means(sweep, metric, pick, first_is_best):
    _, table, done, _ = sweep
    candidates = [n for n in NAMES if written_values(done, n, metric)]
    means = [np.mean(written_values(done, n, metric)) for n in candidates]
    best = table["best"][metric]
    assert best["cell"] == candidates[pick(means)]
    # The fixture puts the best in a later cell, or in the first (to catch off-by-ones).
    assert (best["cell"] == NAMES[0]) == first_is_best
    other = np.argmax if pick is np.argmin else np.argmin
    assert candidates[other(means)] != best["cell"]  # a min/max swap would be seen
    np.testing.assert_allclose(best["mean"], np.max(means) if pick is np.argmax else min(means))
    assert best["values"] == CELLS[NAMES.index(best["cell"])]["values"]
    assert NAMES[5] not in (b["cell"] for b in table["best"].values())


def test_the_unevaluated_outlier_decides_train_elbo_only_when_counted(sweep):
    _, table, _, require_evaluation = sweep
    assert table["best"]["train/elbo"]["cell"] == (NAMES[3] if require_evaluation else NAMES[4])


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("test/nll_nats", "lower"),
        ("train/loss", "lower"),
        ("test/nll_bits_per_dim", "lower"),
        ("validation/elbo", "higher"),
        ("test/iwae_bound_k5000", "higher"),
        ("test/mutual_information_nats", "higher"),
        ("test/log_likelihood", "higher"),
        ("train/kl", None),
        ("train/param_norm", None),
    ],
    ids=lambda value: str(value),
)
def test_direction_of_a_metric_name(metric, expected):
    assert grid_table.direction(metric) == expected


def test_metrics_without_direction_have_no_best(sweep):
    _, table, _, _ = sweep
    assert "train/kl" in table["cells"][0]["metrics"]
    assert "train/kl" not in table["best"]
    assert "test/kl" not in table["best"]


def test_runs_not_done_are_listed_with_why(sweep):
    workdir, table, _, require_evaluation = sweep
    expected = [
        {"cell": n, "seed": s, "workdir": str(cell_workdir(workdir, n, s)), "why": "not trained"}
        for n, s in itertools.product(NAMES, SEEDS)
        if (n, s) in NOT_TRAINED
    ]
    if require_evaluation:
        name, seed = NOT_EVALUATED
        expected.append(
            {
                "cell": name,
                "seed": seed,
                "why": "not evaluated",
                "workdir": str(cell_workdir(workdir, name, seed)),
            }
        )
    key = lambda m: (NAMES.index(m["cell"]), m["seed"])
    assert sorted(table["missing"], key=key) == sorted(expected, key=key)


ROW = re.compile(r"(\S+) ± (\S+) \[(\S+), (\S+)\]")


def test_markdown_has_a_row_per_cell_with_the_summaries(sweep):
    workdir, table, done, _ = sweep
    text = (workdir / files.SWEEP_TABLE_MARKDOWN).read_text()
    assert text.startswith("# Grid sweep\n")
    lines = text.splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == [
        *FIELDS,
        "seeds done",
        "test/nll_nats",
        "test/elbo",
        "validation/elbo",
        "train/elbo",
        "test/active_units",
    ]
    rows = [line for line in lines[4:] if line.startswith("|")]
    assert len(rows) == len(CELLS)
    for row, cell in zip(rows, CELLS, strict=True):
        columns = [c.strip() for c in row.strip("|").split("|")]
        assert columns[:2] == [str(cell["values"][f]) for f in FIELDS]
        n_done = sum((cell["name"], s) in done for s in SEEDS)
        assert columns[2] == f"{n_done}/{len(SEEDS)}"
        for metric, column in zip(header[3:], columns[3:], strict=True):
            values = written_values(done, cell["name"], metric)
            if not values:
                assert column == "–"
                continue
            mean, std, half = numpy_summary(values)
            shown = [float(x) for x in ROW.fullmatch(column).groups()]
            np.testing.assert_allclose(shown, [mean, std, mean - half, mean + half], rtol=5e-3)
    best_nll = table["best"]["test/nll_nats"]
    assert f"- test/nll_nats (lower is better): {best_nll['cell']} mean " in text
    assert "- validation/elbo (higher is better): " in text
    missing = text.split("## Missing")[1]
    assert missing.count("not trained") == len(NOT_TRAINED)
    assert ("not evaluated" in missing) == sweep[3]
    assert "Student's t" in text
    assert "std is the sample standard deviation over seeds" in text


def test_the_json_file_is_the_returned_table(sweep):
    workdir, table, _, _ = sweep
    written = json.loads((workdir / files.SWEEP_TABLE_JSON).read_text())
    assert json.dumps(written) == json.dumps(table)


def assert_nontrivial_png(path):
    assert path.stat().st_size > 5_000, path
    pixels = image.imread(path)
    assert pixels.ndim == 3
    assert pixels.shape[0] > 200, pixels.shape
    assert pixels.shape[1] > 400, pixels.shape
    # Coloured lines in the panels (the left 60%; the legend is at the right): axes that
    # are drawn but empty have only black, grey and white there.
    panels = pixels[:, : int(0.6 * pixels.shape[1]), :3]
    coloured = (panels.max(axis=-1) - panels.min(axis=-1)) > 0.25
    assert coloured.sum() > 500, coloured.sum()


def test_figures_are_written(sweep):
    workdir, _, _, _ = sweep
    for name in ("grid_objective.beta.png", "grid_model.latent_dim.png", "sweep_curves.png"):
        assert_nontrivial_png(workdir / files.FIGURES_DIR / name)


def test_without_evaluation_the_figures_show_validation_elbo(tmp_path, capsys):
    """No test metrics, a categorical field, one seed per cell (no error bars)."""
    cells = [
        {"name": cell_name(v), "values": v, "group": 0}
        for v in ({"model.likelihood": "bernoulli"}, {"model.likelihood": "logistic"})
    ]
    rng = np.random.default_rng(1)
    for index, cell in enumerate(cells):
        m = fabricated_metrics(rng, index)
        write_run(cell_workdir(tmp_path, cell["name"], 0), m, evaluated=False)
    table = grid_table.write_grid_table(
        tmp_path, ["model.likelihood"], cells, [0], require_evaluation=False
    )
    assert grid_table._panel_metrics(table) == ["validation/elbo"]
    assert table["missing"] == []
    assert table["cells"][0]["metrics"]["validation/elbo"]["n"] == 1
    paths = grid_table.field_figures(tmp_path, table)
    assert [p.name for p in paths] == ["grid_model.likelihood.png"]
    assert_nontrivial_png(paths[0])
    assert "(1 seed)" in grid_table.markdown(table)
    grid_table.print_summary(table)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(table["best"])
    assert all(line.startswith("best ") for line in lines)


def test_print_summary_has_a_line_per_best_metric_and_missing_run(sweep, capsys):
    _, table, _, _ = sweep
    grid_table.print_summary(table)
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("best ") for line in lines) == len(table["best"])
    assert sum(line.startswith("missing ") for line in lines) == len(table["missing"])
    assert len(lines) == len(table["best"]) + len(table["missing"])


@pytest.mark.parametrize(
    ("values", "scale", "positions"),
    [
        ([0.1, 0.5, 2.0], "log", [0.1, 0.5, 2.0]),
        ([1e-4, 1e-3], "log", [1e-4, 1e-3]),
        ([2, 8], "linear", [2.0, 8.0]),
        ([0.0, 1.0, 10.0], "linear", [0.0, 1.0, 10.0]),
        ([-1.0, 10.0], "linear", [-1.0, 10.0]),
        (["bernoulli", "logistic"], "categorical", [0.0, 1.0]),
        ([[512, 256], [256, 128]], "categorical", [0.0, 1.0]),
        ([True, False], "categorical", [0.0, 1.0]),
    ],
    ids=[
        "log-span-20",
        "log-span-10",
        "linear-span-4",
        "linear-with-zero",
        "linear-negative",
        "strings",
        "tuples",
        "bools",
    ],
)
def test_field_axis(values, scale, positions):
    got_positions, got_scale, labels = grid_table._field_axis(values)
    assert (got_positions, got_scale) == (positions, scale)
    assert len(labels) == len(values)
    if scale == "categorical" and isinstance(values[0], list):
        assert labels == ["512:256", "256:128"]


def test_mean_curve_is_over_the_epochs_every_seed_recorded(tmp_path):
    run_dirs = [tmp_path / "a", tmp_path / "b"]
    series = {"a": [1.0, 2.0, 4.0], "b": [3.0, 5.0]}  # b has no epoch 3
    for run_dir in run_dirs:
        run_dir.mkdir()
        records = [
            {"epoch": e, "validation/elbo": v} for e, v in enumerate(series[run_dir.name], start=1)
        ]
        (run_dir / files.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    epochs, means = grid_table._mean_curve(run_dirs, "validation/elbo")
    assert epochs == [1, 2]
    np.testing.assert_allclose(means, [2.0, 3.5])
