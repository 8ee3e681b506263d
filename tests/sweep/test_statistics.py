"""The sweep tables' three parts (vae_jax/sweep/statistics.py, markdown.py, plots.py):
numbers against scipy and by hand, one renderer for both tables' pages, and the older
names of aggregate.py and grid_table.py pointing at them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from vae_jax.sweep import aggregate, grid_table, markdown, plots, statistics


def test_summarize_is_the_student_t_interval_of_the_mean():
    values = [1.0, 2.0, 4.0, 7.0]
    row = statistics.summarize(values)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert row["mean"] == pytest.approx(3.5)
    assert row["std"] == pytest.approx(np.std(values, ddof=1))
    assert (row["ci95_low"], row["ci95_high"]) == pytest.approx((low, high))
    one = statistics.summarize([2.0])
    assert one["n"] == 1
    assert math.isnan(one["std"])
    assert math.isnan(one["ci95_low"])


def test_metric_rows_list_every_seed_and_count_the_done_ones():
    per_seed = {0: {"a": 1.0, "b": 5.0}, 2: {"a": 3.0}}
    rows = statistics.metric_rows(per_seed, [0, 1, 2])
    assert list(rows) == ["a", "b"]
    assert rows["a"]["per_seed"] == {"0": 1.0, "1": None, "2": 3.0}
    assert rows["a"]["n"] == 2
    assert rows["b"]["n"] == 1


def test_best_takes_the_direction_from_the_name_and_skips_non_finite_means():
    def row(name, nll, elbo):
        metrics = {"test/nll_nats": {"mean": nll}, "test/elbo": {"mean": elbo}}
        return {"name": name, "values": {}, "metrics": metrics}

    rows = [row("a", 90.0, -95.0), row("b", float("nan"), -91.0), row("c", 92.0, -99.0)]
    best = statistics.best(rows)
    assert best["test/nll_nats"]["cell"] == "a"  # b's NaN is not a candidate
    assert best["test/elbo"]["cell"] == "b"
    assert statistics.direction("train/loss") == "lower"
    assert statistics.direction("train/grad_norm") is None


def test_mean_curve_keeps_the_epochs_every_run_has():
    epochs, means = statistics.mean_curve([{1: 1.0, 2: 3.0}, {1: 3.0, 2: 5.0, 3: 9.0}])
    assert epochs == [1, 2]
    assert means == [2.0, 4.0]
    assert statistics.mean_curve([]) == ([], [])


def test_both_pages_come_from_the_one_renderer():
    assert aggregate.markdown is markdown.seed_table
    assert grid_table.markdown is markdown.grid_table
    assert aggregate.summarize is statistics.summarize
    assert grid_table.direction is statistics.direction
    assert aggregate.curves_figure is plots.seed_curves
    assert grid_table.curves_figure is plots.grid_curves
    assert markdown.seed_cell(float("nan")) == "–"
    assert markdown.seed_cell(1234567.0) == "1.235e+06"
    assert markdown.number(float("inf")) == "–"
    assert markdown.number(1 / 3, 3) == "0.333"
    assert markdown.value_text([1, 2]) == "1:2"


def test_the_seed_page_has_a_column_per_seed_and_lists_the_missing():
    table = {
        "seeds": [0, 1],
        "missing": [{"seed": 1, "why": "not trained"}],
        "metrics": {"test/elbo": {"per_seed": {"0": -90.0, "1": None},
                                  **statistics.summarize([-90.0])}},
    }  # fmt: skip
    page = markdown.seed_table(table)
    assert "| metric | seed 0 | seed 1 | mean | std | 95% interval |" in page
    assert "| test/elbo | -90 | – | -90 | – | [–, –] |" in page
    assert "- seed 1: not trained" in page
