"""One function per figure; each returns the matplotlib Figure and, given a path, saves it as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


def _save(fig, path: Path | None):
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def plot_expert_accuracy(table: pd.DataFrame, path: Path | None = None):
    """Accuracy of each expert against its price (log scale), coloured by size class."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for size_class, rows in table.groupby("size_class", sort=False):
        ax.scatter(rows["cost_per_1m_usd"], rows["accuracy"], label=size_class, s=40)
    for r in table.itertuples():
        ax.annotate(r.expert.split("/")[-1], (r.cost_per_1m_usd, r.accuracy), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("cost (USD per 1M tokens, log scale)")
    ax.set_ylabel("MMLU accuracy (own covered questions)")
    ax.legend(title="size class")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_accuracy_vs_cost(table1: pd.DataFrame, path: Path | None = None):
    """Figure 4: accuracy against cost, this repo's systems beside the paper's points."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ours = table1[table1["source"] == "this repo"]
    paper = table1[table1["source"].str.startswith("paper")]
    ax.scatter(ours["cost_per_1m_usd"], ours["accuracy"], label="this repo (test split)", s=40)
    ax.scatter(paper["cost_per_1m_usd"], paper["accuracy"], label="paper", marker="x", s=50)
    for r in pd.concat([ours, paper]).itertuples():
        ax.annotate(str(r.system).split("/")[-1], (r.cost_per_1m_usd, r.accuracy), fontsize=7,
                    xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("cost (USD per 1M tokens, log scale)")
    ax.set_ylabel("MMLU accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
