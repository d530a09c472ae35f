"""The budget explorer of notebook 06: the table it shows, checked by hand on a two-budget toy Table 1 (the
columns of results/table1.csv, those it does not set empty)."""

import pandas as pd
import pytest

from leeroo_lib.evaluation.evaluate import TABLE1_COLUMNS
from leeroo_lib.evaluation.explore import budget_summary, budget_view, pool_budgets

ROW = {"kind": "leeroo", "pool": "p", "ci_low": 0.5, "ci_high": 0.7, "diff_ci_low": 0.0, "diff_ci_high": 0.1}
TABLE1 = pd.DataFrame(
    [
        {**ROW, "budget": 0.2, "accuracy": 0.6, "cost_per_1m_usd": 0.2, "best_single_at_cost": "org/cheap",
         "diff_vs_best_single": 0.05, "zero_router_mix": "cheap 100%", "diff_vs_zero_router": 0.05,
         "zero_ci_low": 0.0, "zero_ci_high": 0.1},
        {**ROW, "budget": 0.6, "accuracy": 0.65, "cost_per_1m_usd": 0.58, "best_single_at_cost": "org/dear",
         "diff_vs_best_single": -0.01, "zero_router_mix": "cheap 50%; dear 50%", "diff_vs_zero_router": 0.02,
         "zero_ci_low": -0.01, "zero_ci_high": 0.05},
    ]
).reindex(columns=TABLE1_COLUMNS)  # fmt: skip
SHARES = pd.DataFrame(
    {"pool": "p", "budget": [0.2, 0.2, 0.6, 0.6], "size_class": ["7B", "70B", "7B", "70B"], "share": [1, 0, 0.25, 0.75]}
)


def test_the_summary_reads_one_row_of_table1_and_its_routing_shares():
    view = budget_summary(TABLE1, SHARES, "p", 0.6)["p @ 0.6"]
    assert view["accuracy % [95% CI]"] == "65.0 [50.0, 70.0]" and view["spent (USD / 1M tokens)"] == "0.580"
    assert view["best single expert it affords"] == "dear" and view["vs it, points [95% CI]"] == "-1.0 [+0.0, +10.0]"
    assert view["vs the zero router, points [95% CI]"] == "+2.0 [-1.0, +5.0]"
    assert (view["queries to 7B"], view["queries to 70B"]) == ("25%", "75%")
    assert "queries to 70B" not in budget_summary(TABLE1, SHARES, "p", 0.2).index  # no query went there
    with pytest.raises(ValueError, match=r"pool 'p' was not routed at budget 0.3: choose one of \[0.2, 0.6\]"):
        budget_summary(TABLE1, SHARES, "p", 0.3)
    with pytest.raises(ValueError, match="no Leeroo row for pool 'q'"):
        pool_budgets(TABLE1, "q")


def test_the_widget_follows_its_slider(capsys):
    """Outside a kernel the widget's output area prints: what it shows lands on stdout."""
    view = budget_view(TABLE1, SHARES)
    pool, budget = view.children[0].children
    assert list(budget.options) == [0.2, 0.6] and budget.value == 0.2
    assert "60.0 [50.0, 70.0]" in capsys.readouterr().out
    budget.value = 0.6
    assert "65.0 [50.0, 70.0]" in capsys.readouterr().out
