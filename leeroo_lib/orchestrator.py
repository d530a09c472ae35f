"""Equation 1: one expert per query, maximising the predicted chance of success under a budget.

The budget is the allowed mean cost per 1M tokens over a batch of n queries (B = budget x n).
Costs are counted in whole micro-dollars, so "never over the budget" holds exactly, without
floating-point slack.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .policy import POLICIES

MODES = ("sequential", "global")
MICRO = 1_000_000


def _check_budget(costs: pd.Series, budget: float) -> None:
    cheapest = costs.idxmin()
    if budget < costs[cheapest]:
        raise ValueError(
            f"budget {budget} USD per 1M tokens is below the cheapest allowed expert, {cheapest} at "
            f"{costs[cheapest]} USD per 1M tokens: raise the budget or allow a cheaper expert"
        )


def _allocate_sequential(proba: np.ndarray, costs: np.ndarray, total: int) -> np.ndarray:
    """The paper: query by query, drop the experts that would leave too little budget for the
    cheapest expert on every query still to come, then take the most likely to succeed."""
    n = len(proba)
    cheapest = costs.min()
    choice = np.empty(n, dtype=np.int64)
    spent = 0
    for i in range(n):
        affordable = costs <= total - spent - cheapest * (n - i - 1)
        choice[i] = np.flatnonzero(affordable)[np.argmax(proba[i, affordable])]
        spent += costs[choice[i]]
    return choice


def _allocate_global(proba: np.ndarray, costs: np.ndarray, total: int) -> np.ndarray:
    """The Lagrangian relaxation: each query takes argmax_j p_ij - lambda c_j, with lambda bisected
    to the smallest value whose routes fit the budget. Queries that change expert at that lambda
    (ties) are then moved to their better expert while the leftover budget pays for it."""
    scale = costs / MICRO

    def routes(lam: float) -> np.ndarray:
        return np.argmax(proba - lam * scale, axis=1)

    low, high = 0.0, 1.0
    if costs[routes(low)].sum() <= total:
        return routes(low)
    while costs[routes(high)].sum() > total:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (low, middle) if costs[routes(middle)].sum() <= total else (middle, high)
    choice, better = routes(high), routes(low)
    moves = np.flatnonzero(choice != better)
    gain = proba[moves, better[moves]] - proba[moves, choice[moves]]
    extra = costs[better[moves]] - costs[choice[moves]]
    spent = costs[choice].sum()
    for i in moves[np.argsort(-gain / np.maximum(extra, 1), kind="stable")]:
        step = costs[better[i]] - costs[choice[i]]
        if spent + step <= total:
            choice[i], spent = better[i], spent + step
    return choice


def allocate(proba: pd.DataFrame, costs: pd.Series, budget: float, mode: str = "sequential") -> pd.Series:
    """One expert per row of ``proba`` (rows: queries, columns: experts) with mean cost <= budget."""
    if mode not in MODES:
        raise ValueError(f"unknown mode '{mode}': use one of {MODES}")
    costs = costs[proba.columns]
    _check_budget(costs, budget)
    # Experts sorted by cost so that argmax, which takes the first of equals, picks the cheapest.
    order = np.argsort(costs.to_numpy(), kind="stable")
    experts = proba.columns[order]
    units = np.rint(costs.to_numpy()[order] * MICRO).astype(np.int64)
    total = int(np.floor(budget * MICRO + 1e-6)) * len(proba)
    chooser = _allocate_sequential if mode == "sequential" else _allocate_global
    choice = chooser(proba.to_numpy(np.float64)[:, order], units, total)
    return pd.Series(experts[choice], index=proba.index, name="expert")


class Orchestrator:
    """A fitted policy plus the experts' prices: routes a batch of questions under a budget."""

    def __init__(self, policy, costs: pd.Series, mode: str = "sequential"):
        if mode not in MODES:
            raise ValueError(f"unknown mode '{mode}': use one of {MODES}")
        unpriced = [e for e in policy.experts_ if e not in costs.index]
        if unpriced:
            raise ValueError(f"no cost given for expert(s) {unpriced}: add them to costs (expert_costs(...))")
        self.policy = policy
        self.costs = costs[policy.experts_].astype(float)
        self.mode = mode

    def _pool(self, experts) -> list[str]:
        if experts is None:
            return list(self.policy.experts_)
        unknown = [e for e in experts if e not in self.policy.experts_]
        if unknown:
            raise ValueError(
                f"unknown expert(s) {unknown}: this orchestrator's policy was trained on {self.policy.experts_}"
            )
        return list(experts)

    def route(self, questions: pd.DataFrame, budget: float, experts=None) -> pd.Series:
        """The expert for each question (indexed like ``questions``); mean cost <= ``budget``
        (USD per 1M tokens). ``experts`` restricts the pool, e.g. ``pool_experts("open")``."""
        return self.route_budgets(questions, [budget], experts)[budget]

    def route_budgets(self, questions: pd.DataFrame, budgets, experts=None) -> dict[float, pd.Series]:
        """``route`` at several budgets, reading the questions with the policy only once."""
        pool = self._pool(experts)
        for budget in budgets:
            _check_budget(self.costs[pool], budget)
        proba = self.policy.predict_proba(questions)[pool]
        return {budget: allocate(proba, self.costs, budget, self.mode) for budget in budgets}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save(path / "policy")
        (path / "orchestrator.json").write_text(json.dumps({
            "mode": self.mode, "policy": type(self.policy).__name__, "costs": self.costs.to_dict(),
        }, indent=1))

    @classmethod
    def load(cls, path: Path) -> Orchestrator:
        path = Path(path)
        if not (path / "orchestrator.json").is_file():
            raise FileNotFoundError(f"{path} holds no saved orchestrator (orchestrator.json); run notebooks/04_policy.ipynb")
        saved = json.loads((path / "orchestrator.json").read_text())
        policy = POLICIES[saved["policy"]].load(path / "policy")
        return cls(policy, pd.Series(saved["costs"], name="cost_per_1m_usd"), mode=saved["mode"])
