"""Equation 1: one expert per query, maximising the predicted chance of success under a budget.

The budget is the allowed mean cost per 1M tokens over a batch of n queries (B = budget x n).
Costs are counted in whole micro-dollars, read as typed (a budget of 0.3 is 300,000, not the binary
float just below it; a budget is rounded down, a price must be whole), so "never over the budget"
holds exactly, without floating-point slack.
"""

from __future__ import annotations

import json
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from .policies import POLICIES, policy_class
from .validation import check_budget, check_budgets, check_expert_names, check_question_frame

MODES = ("sequential", "global")
MICRO = 1_000_000


def _as_typed(amount: float) -> Decimal:
    """The decimal a number was typed as: the shortest one that gives the same float (0.3, not
    0.299999999999999988898 as the float itself holds)."""
    return Decimal(repr(float(amount)))


def budget_units(budget: float) -> int:
    """A budget in whole micro-dollars, rounded down: the routes never spend more than was given."""
    return int((_as_typed(budget) * MICRO).to_integral_value(ROUND_FLOOR))


def price_units(costs: pd.Series) -> np.ndarray:
    """Prices in whole micro-dollars, exactly: a price with a finer part is refused, not rounded
    (rounded down, it would let the routes overspend; up, a budget equal to it could not buy it)."""
    units = [_as_typed(c) * MICRO for c in costs]
    fractional = {e: c for e, c, u in zip(costs.index, costs, units) if u != u.to_integral_value()}
    if fractional:
        raise ValueError(
            f"prices are counted in whole micro-dollars (at most 6 decimals of USD per 1M tokens); "
            f"{fractional} are finer: round them to 6 decimals"
        )
    return np.array([int(u) for u in units], dtype=np.int64)


def _check_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {MODES}")


def _check_costs(costs, experts) -> pd.Series:
    """The prices of ``experts``: a Series with a finite, non-negative price for each."""
    if not isinstance(costs, pd.Series):
        raise TypeError(
            f"costs must be a pandas Series of USD per 1M tokens indexed by expert name "
            f"(experts.expert_costs(...)), got {type(costs).__name__}"
        )
    unpriced = [e for e in experts if e not in costs.index]
    if unpriced:
        raise ValueError(f"no cost given for expert(s) {unpriced}: add them to costs (expert_costs(...))")
    costs = pd.to_numeric(costs[list(experts)], errors="coerce").astype(float)
    bad = costs[~np.isfinite(costs) | (costs < 0)]
    if len(bad):
        raise ValueError(f"costs must be finite, non-negative USD per 1M tokens; {bad.to_dict()} are not")
    price_units(costs)
    return costs


def _check_budget(costs: pd.Series, budget: float) -> None:
    check_budget(budget)
    cheapest = costs.idxmin()
    if budget_units(budget) < price_units(costs[[cheapest]])[0]:
        raise ValueError(
            f"budget {budget} USD per 1M tokens is below the cheapest allowed expert, {cheapest} at "
            f"{costs[cheapest]} USD per 1M tokens: raise the budget or allow a cheaper expert"
        )


def _check_proba(proba) -> None:
    if not isinstance(proba, pd.DataFrame):
        raise TypeError(
            f"proba must be a pandas DataFrame (rows: queries, columns: experts), got {type(proba).__name__}; "
            "e.g. policy.predict_proba(questions)"
        )
    if proba.shape[1] == 0 or proba.columns.duplicated().any():
        raise ValueError(f"proba's columns must name each expert once, got {list(proba.columns)}")
    missing = proba.isna().any(axis=1).to_numpy()
    if missing.any():
        raise ValueError(
            f"proba has NaN for {missing.sum()} queries (first: {list(proba.index[missing][:3])}): give "
            "every expert a chance of success on every query (an OraclePolicy: route only questions "
            "all the pool's experts were measured on)"
        )


def allocate_sequential(proba: np.ndarray, costs: np.ndarray, total: int) -> np.ndarray:
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
    """One expert per row of ``proba`` (rows: queries, columns: experts) with mean cost <= budget,
    exactly, with the budget and the prices read as typed."""
    _check_mode(mode)
    _check_proba(proba)
    costs = _check_costs(costs, proba.columns)
    _check_budget(costs, budget)
    # Experts sorted by cost so that argmax, which takes the first of equals, picks the cheapest.
    order = np.argsort(costs.to_numpy(), kind="stable")
    experts = proba.columns[order]
    units = price_units(costs.iloc[order])
    # A budget above the dearest expert buys nothing more; capping it keeps the sums within int64.
    total = min(budget_units(budget), int(units.max())) * len(proba)
    chooser = allocate_sequential if mode == "sequential" else _allocate_global
    choice = chooser(proba.to_numpy(np.float64)[:, order], units, total)
    return pd.Series(experts[choice], index=proba.index, name="expert")


class Orchestrator:
    """A fitted policy plus the experts' prices: routes a batch of questions under a budget.

    ``pools`` (pool name -> served experts, from notebook 02's universe) names the expert sets a
    caller routes over with ``route(questions, budget, pool="open")``; the policy's experts are their union.
    """

    def __init__(self, policy, costs: pd.Series, mode: str = "sequential", pools: dict[str, list[str]] | None = None):
        _check_mode(mode)
        if not hasattr(policy, "experts_"):
            raise ValueError(
                f"the policy ({type(policy).__name__}) is not fitted: call policy.fit(questions, scores) "
                "first, or load a saved orchestrator with Orchestrator.load(path)"
            )
        self.policy = policy
        self.costs = _check_costs(costs, policy.experts_)
        self.mode = mode
        self.pools = {
            name: check_expert_names(experts, list(policy.experts_), f"pool '{name}'")
            for name, experts in (pools or {}).items()
        }

    def _pool(self, pool: str | None, experts) -> list[str]:
        if pool is not None and experts is not None:
            raise ValueError("pass a pool name or a list of experts, not both")
        if pool is not None:
            if not isinstance(pool, str):
                raise TypeError(
                    f"pool must be the name of a pool (one of {sorted(self.pools)}), got {pool!r}; "
                    "to route over a list of experts pass experts=[...]"
                )
            if pool not in self.pools:
                raise ValueError(f"unknown pool '{pool}': this orchestrator serves the pools {sorted(self.pools)}")
            return self.pools[pool]
        if experts is None:
            return list(self.policy.experts_)
        return check_expert_names(experts, list(self.policy.experts_))

    def route(self, questions: pd.DataFrame, budget: float, pool: str | None = None, experts=None) -> pd.Series:
        """The expert for each question (indexed like ``questions``); mean cost <= ``budget``
        (USD per 1M tokens). ``pool`` routes over one pool's served experts, ``experts`` over any
        subset of the policy's; neither: over all of them. No question: an empty Series."""
        check_budget(budget)
        return self.route_budgets(questions, [budget], pool, experts)[budget]

    def route_budgets(
        self, questions: pd.DataFrame, budgets, pool: str | None = None, experts=None
    ) -> dict[float, pd.Series]:
        """``route`` at several budgets, reading the questions with the policy only once. Every
        argument is checked before the policy reads a question."""
        check_question_frame(questions)
        budgets = check_budgets(budgets)
        served = self._pool(pool, experts)
        for budget in budgets:
            _check_budget(self.costs[served], budget)
        proba = self.policy.predict_proba(questions)[served]
        return {budget: allocate(proba, self.costs, budget, self.mode) for budget in budgets}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.policy.save(path / "policy")
        (path / "orchestrator.json").write_text(
            json.dumps(
                {
                    "mode": self.mode,
                    "policy": type(self.policy).__name__,
                    "costs": self.costs.to_dict(),
                    "pools": self.pools,
                },
                indent=1,
            )
        )

    @classmethod
    def load(cls, path: Path) -> Orchestrator:
        path = Path(path)
        if not (path / "orchestrator.json").is_file():
            raise FileNotFoundError(
                f"{path} holds no saved orchestrator (orchestrator.json); run notebooks/04_policy.ipynb"
            )
        saved = json.loads((path / "orchestrator.json").read_text())
        if saved["policy"] not in POLICIES:
            raise ValueError(
                f"{path} was saved with the policy {saved['policy']!r}, which cannot be loaded here "
                f"(loadable: {sorted(POLICIES)}); refit it with notebooks/04_policy.ipynb"
            )
        try:
            policy = policy_class(saved["policy"]).load(path / "policy")
        except OSError as err:  # a missing file, or a model folder transformers cannot read
            raise FileNotFoundError(
                f"{path} holds an incomplete orchestrator: {err.filename or err} is missing; "
                "save it again with notebooks/04_policy.ipynb"
            ) from err
        return cls(
            policy, pd.Series(saved["costs"], name="cost_per_1m_usd"), mode=saved["mode"], pools=saved.get("pools")
        )
