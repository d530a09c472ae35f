"""Result tables shaped for reading in a notebook: an accuracy in percent with its 95% interval in
one column, and only the columns that apply to the rows shown. The CSVs under results/ keep every
number at full precision; these frames are for the eye only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING = "-"


def percent_with_ci(value, low, high, signed: bool = False) -> list[str]:
    """Fractions as ``62.3 [60.1, 64.5]`` (``+2.7 [+0.7, +4.6]`` when ``signed``); the value alone
    where it has no interval, ``-`` where there is none."""
    sign = "+" if signed else ""

    def one(v, lo, hi) -> str:
        if pd.isna(v):
            return MISSING
        text = f"{100 * v:{sign}.1f}"
        return text if pd.isna(lo) or pd.isna(hi) else f"{text} [{100 * lo:{sign}.1f}, {100 * hi:{sign}.1f}]"

    return [one(v, lo, hi) for v, lo, hi in zip(value, low, high)]


def usd_text(values) -> list[str]:
    """USD amounts as ``0.185``, ``-`` where there is none (MMLU has no answer lengths)."""
    return [MISSING if pd.isna(v) else f"{v:.3f}" for v in values]


def table1_for_reading(table1: pd.DataFrame) -> pd.DataFrame:
    """Rows of results/table1.csv (evaluate.table1) for reading: system, pool, budget, a router's allocation
    rule (global: Eq. 1 solved for the whole test split at once; sequential: one question at a time), what it cost,
    accuracy % [95% CI], questions; for budgeted routers the best single expert the budget affords and
    the paired difference to it and to the zero router in points [95% CI]; on MMLU-Pro the USD per 1,000
    questions; for routers the training set and the expert evaluations it holds. A column empty for every
    row shown is left out."""
    readable = pd.DataFrame(
        {
            "system": table1["system"],
            "pool": table1["pool"],
            "budget": [MISSING if pd.isna(b) else f"{b:g}" for b in table1["budget"]],
            "allocation": table1["allocation"],
            "cost (USD / 1M tokens)": [MISSING if pd.isna(c) else f"{c:.2f}" for c in table1["cost_per_1m_usd"]],
            "accuracy % [95% CI]": percent_with_ci(table1["accuracy"], table1["ci_low"], table1["ci_high"]),
            "questions": table1["n_questions"].astype("Int64"),
            "best single expert the budget affords": table1["best_single_at_cost"],
            "difference, points [95% CI]": percent_with_ci(
                table1["diff_vs_best_single"], table1["diff_ci_low"], table1["diff_ci_high"], signed=True
            ),
            "vs zero router, points [95% CI]": percent_with_ci(
                table1["diff_vs_zero_router"], table1["zero_ci_low"], table1["zero_ci_high"], signed=True
            ),
            "USD per 1,000 questions": usd_text(table1["usd_per_1000_questions"]),
            "trained on": table1["trained_on"],
            "training evaluations": [MISSING if pd.isna(n) else f"{n:,.0f}" for n in table1["training_evaluations"]],
        }
    ).replace(MISSING, np.nan)
    return readable.dropna(axis=1, how="all").astype(object).fillna(MISSING).reset_index(drop=True)
