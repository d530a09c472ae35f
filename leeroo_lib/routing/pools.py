"""Routing pools: which candidate experts a pool offers, and which of them its universe serves.

A pool is a profile setting (``pools:`` in configs/<profile>.yaml), not code:

    pools:
      open:
        candidates: {suites: [recorded, live], access: open}   # and/or names: [...]
        universe: {rule: greedy, k: null}                        # or {rule: cost_aware, price_cap: 2.0}
        budgets: [0.2, 0.4, 0.6]                                 # evaluation tiers (notebook 05)

The universe (Eq. 2, Algorithm 1) is chosen on the **training split only**: on the pool's training
questions (train-split rows where some candidate was measured), among the eligible candidates. A
candidate measured on only part of them is eligible when it covers at least ``min_coverage`` of them
(``universe.min_coverage`` of the pool, else of the profile); the universe is then computed on the rows every eligible
candidate covers: a missing value is never filled. S(U) on the test split is reported beside, never
used to choose.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Pool
from ..data.splits import split_index
from ..experts.catalog import Expert, expert_costs
from .universe import complete_questions, greedy_universe

UNIVERSE_COLUMNS = [
    "pool",
    "benchmark",
    "expert",
    "k",
    "served",
    "S_train",
    "S_test",
    "gain",
    "cost_per_1m_usd",
    "coverage",
    "eligible",
    "reason",
    "n_train",
    "n_test",
]


def pool_members(pool: Pool, catalog: list[Expert]) -> list[str]:
    """The catalog experts of ``pool``'s suites (and access, when set), plus those it names, in catalog order; all
    of them answered the pool's benchmark (Algorithm 1 chooses its universe among them)."""
    known = {e.name: e for e in catalog}
    unknown = [n for n in pool.candidates.names if n not in known]
    if unknown:
        raise ValueError(f"pool '{pool.name}' names unknown expert(s) {unknown}; the catalog has {sorted(known)}")
    members = [
        e
        for e in catalog
        if (e.suite in pool.candidates.suites and pool.candidates.access in (None, e.access))
        or e.name in pool.candidates.names
    ]
    elsewhere = [f"{e.name} ({e.benchmark})" for e in members if e.benchmark != pool.benchmark]
    if elsewhere:
        raise ValueError(
            f"pool '{pool.name}' routes {pool.benchmark} questions, but its candidates {elsewhere} were measured "
            "on another benchmark: give the pool the suites of its benchmark (experts.catalog.SUITE_BENCHMARK)"
        )
    return [e.name for e in members]


def eligibility(scores: pd.DataFrame, splits: pd.DataFrame, candidates: list[str], min_coverage: float) -> pd.DataFrame:
    """Per candidate: the share of the pool's training questions it was measured on, and whether that
    reaches ``min_coverage``. The pool's training questions are the train-split rows where some
    candidate was measured. A candidate with no column in ``scores`` was measured nowhere."""
    train = scores.loc[scores.index.isin(split_index(splits, "train"))].reindex(columns=candidates)
    train = train[train.notna().any(axis=1)]
    coverage = train.notna().mean() if len(train) else pd.Series(0.0, index=candidates)
    eligible = coverage >= min_coverage
    reason = np.where(
        eligible,
        "",
        [
            f"measured on {c:.1%} of the pool's {len(train):,} training questions, "
            f"below min_coverage {min_coverage:.0%}"
            for c in coverage
        ],
    )
    return pd.DataFrame(
        {"expert": candidates, "coverage": coverage.to_numpy(), "eligible": eligible.to_numpy(), "reason": reason}
    )


def _complete(scores: pd.DataFrame, splits: pd.DataFrame, split: str, experts: list[str]) -> pd.DataFrame:
    rows = scores.loc[scores.index.isin(split_index(splits, split)), experts]
    return rows.dropna(how="any")


def choose_universe(scores: pd.DataFrame, splits: pd.DataFrame, pool: Pool, catalog: list[Expert]) -> pd.DataFrame:
    """The pool's universe, chosen on training-split rows only: one row per candidate (columns
    ``UNIVERSE_COLUMNS``), the served ones first in the order Algorithm 1 added them, with S(U) on the
    train rows after each addition and, beside it, on the test rows (never used to choose)."""
    candidates = pool_members(pool, catalog)
    if not candidates:
        raise ValueError(
            f"pool '{pool.name}' has no candidate: its suites {pool.candidates.suites}, access "
            f"{pool.candidates.access!r} and names {pool.candidates.names} match no expert of the catalog"
        )
    min_coverage = pool.universe.min_coverage
    if min_coverage is None:
        raise ValueError(f"pool '{pool.name}': set universe.min_coverage (a profile gives its own by default)")
    table = eligibility(scores, splits, candidates, min_coverage)
    eligible = table.loc[table["eligible"], "expert"].tolist()
    if not eligible:
        raise ValueError(
            f"pool '{pool.name}': no candidate is measured on min_coverage {min_coverage} of its "
            f"training questions ({table['reason'].tolist()}); score them on more questions"
        )
    train = _complete(scores, splits, "train", eligible)
    if train.empty:
        raise ValueError(
            f"pool '{pool.name}': no training question carries a result for all eligible candidates "
            f"{eligible}; score them on common questions"
        )
    costs = expert_costs([e for e in catalog if e.name in eligible])
    rule = pool.universe
    budget = {"costs": costs, "budget": rule.price_cap} if rule.rule == "cost_aware" else {}
    steps = greedy_universe(train, k=rule.k or len(eligible), **budget)
    if not steps:
        raise ValueError(
            f"pool '{pool.name}' serves no expert: none of {eligible} answers any of its {len(train)} "
            "training questions; score the candidates on more questions"
        )
    served = [e for e, _ in steps]
    test = _complete(scores, splits, "test", served)
    s_test = [test[served[: i + 1]].max(axis=1).mean() if len(test) else np.nan for i in range(len(served))]
    order = pd.DataFrame(
        {"expert": served, "k": np.arange(1, len(served) + 1), "S_train": [s for _, s in steps], "S_test": s_test}
    )
    order["gain"] = order["S_train"].diff().fillna(order["S_train"])
    table = table.merge(order, on="expert", how="left")
    table["served"] = table["k"].notna().astype(int)
    table["reason"] = np.where(
        (table["served"] == 1) | ~table["eligible"],
        table["reason"],
        "eligible, not chosen: adds no training question to the universe within its rule",
    )
    table["cost_per_1m_usd"] = [next(e.cost_per_1m_usd for e in catalog if e.name == n) for n in table["expert"]]
    table = table.assign(pool=pool.name, benchmark=pool.benchmark, n_train=len(train), n_test=len(test))
    table = table.sort_values(["served", "k"], ascending=[False, True], kind="stable")
    return table.astype({"k": "Int64"})[UNIVERSE_COLUMNS].reset_index(drop=True)


def eligible_training_scores(
    universe: pd.DataFrame, scores: pd.DataFrame, splits: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """Per pool of ``universe`` (``choose_universe``'s rows), the training-split results of its eligible
    candidates on the questions all of them answered: what the oracle and exhaustive search are read on."""
    train = scores.loc[scores.index.isin(split_index(splits, "train"))]
    return {
        pool: complete_questions(train[rows.loc[rows["eligible"], "expert"]])
        for pool, rows in universe.groupby("pool", sort=False)
    }


def served_experts(universe: pd.DataFrame) -> dict[str, list[str]]:
    """Pool name -> the experts its universe serves, in the order they were added (results/universe.csv)."""
    missing = {"pool", "expert", "served", "k"} - set(universe.columns)
    if missing:
        raise ValueError(f"universe table lacks column(s) {sorted(missing)}: rerun notebooks/02_universe.ipynb")
    served = universe[universe["served"] == 1].sort_values(["k"], kind="stable")
    return {pool: rows["expert"].tolist() for pool, rows in served.groupby("pool", sort=False)}


def served_union(served: dict[str, list[str]], pools) -> list[str]:
    """Every expert that one of ``pools`` serves (``served_experts``), once, in pool order: the experts the
    policy of those pools' benchmark predicts (notebook 04, ``leeroo cv``)."""
    return list(dict.fromkeys(e for pool in pools for e in served[pool]))
