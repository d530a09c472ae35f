"""MMLU evaluation on the fixed test split: the rows of the paper's Table 1."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .data import verify_data_file
from .experts import Expert, get_experts

PAPER_RESULTS_FILE = "paper_results.csv"
TABLE1_COLUMNS = ["system", "cost_per_1m_usd", "accuracy", "n_questions", "source"]


def paper_rows(data_dir: Path | None = None) -> pd.DataFrame:
    """The paper's own Table 1 and Figure 4 numbers, accuracy as a fraction."""
    df = pd.read_csv(verify_data_file(PAPER_RESULTS_FILE, data_dir))
    return pd.DataFrame({
        "system": df["system"],
        "cost_per_1m_usd": df["cost_per_1m_usd"],
        "accuracy": df["mmlu_accuracy"] / 100,
        "n_questions": pd.NA,
        "source": "paper (" + df["where_in_paper"] + ")",
    })


def single_expert_rows(test_scores: pd.DataFrame, catalog: list[Expert]) -> pd.DataFrame:
    """Each expert answering every test question alone."""
    experts = get_experts(list(test_scores.columns), catalog)
    return pd.DataFrame({
        "system": [e.name for e in experts],
        "cost_per_1m_usd": [e.cost_per_1m_usd for e in experts],
        "accuracy": test_scores.mean().values,
        "n_questions": test_scores.notna().sum().values,
        "source": "this repo",
    })
