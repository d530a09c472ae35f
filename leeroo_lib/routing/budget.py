"""Equation 1, the budget rule: one expert per query, maximising the predicted chance of success
with the mean cost of the routes at most the budget, in both of its forms:

- batch (``allocate``): a set of n queries shares B = budget x n; ``sequential`` is the paper's rule
  (query by query, experts that would overrun what is left are excluded), ``global`` its Lagrangian
  relaxation over the whole batch;
- online (``RollingBudget``): a stream of requests, each the last query of a window of the most
  recent ones, by the same sequential rule (the routing service).

Costs are counted in whole micro-dollars, read as typed (a budget of 0.3 is 300,000, not the binary
float just below it; a budget is rounded down, a price must be whole), so "never over the budget"
holds exactly, without floating-point slack; ``check_affordable`` is the one check that a budget buys
at least the cheapest expert, for both forms.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import numpy as np
import pandas as pd

from ..validation import check_budget

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


def check_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {MODES}")


def check_costs(costs, experts) -> pd.Series:
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


def check_affordable(costs: pd.Series, budget: float) -> None:
    """Raise unless ``budget`` is a positive number that buys the cheapest of ``costs`` (whole micro-dollars)."""
    check_budget(budget)
    check_buys_cheapest(costs, budget)


def check_buys_cheapest(costs: pd.Series, budget: float) -> None:
    """Raise unless the number ``budget`` buys the cheapest of ``costs``."""
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
    check_mode(mode)
    _check_proba(proba)
    costs = check_costs(costs, proba.columns)
    check_affordable(costs, budget)
    return assign(proba, costs, budget, mode)


def assign(proba: pd.DataFrame, costs: pd.Series, budget: float, mode: str) -> pd.Series:
    """``allocate`` for arguments its caller has checked once already (``Orchestrator.route``, at its boundary)."""
    costs = costs[proba.columns]
    # Experts sorted by cost so that argmax, which takes the first of equals, picks the cheapest.
    order = np.argsort(costs.to_numpy(), kind="stable")
    experts = proba.columns[order]
    units = price_units(costs.iloc[order])
    # A budget above the dearest expert buys nothing more; capping it keeps the sums within int64.
    total = min(budget_units(budget), int(units.max())) * len(proba)
    chooser = allocate_sequential if mode == "sequential" else _allocate_global
    choice = chooser(proba.to_numpy(np.float64)[:, order], units, total)
    return pd.Series(experts[choice], index=proba.index, name="expert")


@dataclass(frozen=True)
class Ticket:
    """One request's place in its budget's window: the expert it was given and that expert's price."""

    id: int
    expert: str
    units: int
    budget_units: int


class RollingBudget:
    """Eq. 1 online. Requests that carry the same budget share a window of their ``window`` most recent
    (served or in flight); each new request is the last query of its window and takes, by the paper's
    sequential rule, the most likely expert that keeps the window's mean price within the budget.
    Prices are counted in whole micro-dollars, as in ``allocate``.

    So at every decision the mean price of the window, the new request included, is at most its budget,
    and a request with a budget of its own neither spends nor saves for the others. A failed call gives
    its place back (``release``); the window's spend then drops by at least that price, so the fallback
    always affords an expert as cheap as the one that failed. Windows of the ``MAX_WINDOWS`` budgets used
    longest ago are forgotten.
    """

    MAX_WINDOWS = 1024

    def __init__(self, costs: pd.Series, window: int):
        if window < 1:
            raise ValueError(f"window {window}: the budget needs a window of at least one request")
        order = costs.sort_values(kind="stable")  # cheaper first: argmax breaks ties towards the cheaper
        self.experts = list(order.index)
        self.units = price_units(order)
        self.window = window
        self._windows: OrderedDict[int, OrderedDict[int, int]] = OrderedDict()  # budget -> ticket id -> units
        self._ids = 0
        self._lock = threading.Lock()

    def _held(self, budget_units: int) -> OrderedDict[int, int]:
        held = self._windows.setdefault(budget_units, OrderedDict())
        self._windows.move_to_end(budget_units)
        while len(self._windows) > self.MAX_WINDOWS:
            self._windows.popitem(last=False)
        return held

    def _allowance(self, budget_units: int) -> int:
        """The most the next request of this budget may cost (micro-USD per 1M tokens)."""
        recent = list(self._held(budget_units).values())[-(self.window - 1) :] if self.window > 1 else []
        return budget_units * (len(recent) + 1) - sum(recent)

    def _units(self, budget: float) -> int:
        """A budget in micro-dollars; above the dearest expert it buys nothing more, so it is capped there
        (as in ``allocate``), which keeps the window's sums within int64."""
        return min(budget_units(budget), int(self.units.max()))

    def take(self, proba: pd.Series, budget: float, exclude=()) -> Ticket | None:
        """The most likely affordable expert not in ``exclude`` (None if none is left), now held in the window."""
        units = self._units(budget)
        with self._lock:
            open_ = np.array([e not in exclude for e in self.experts])
            total = self._allowance(units)
            if not (open_ & (self.units <= total)).any():
                return None
            p = proba[self.experts].to_numpy(np.float64)[open_]
            choice = np.flatnonzero(open_)[allocate_sequential(p[None, :], self.units[open_], total)[0]]
            self._ids += 1
            ticket = Ticket(self._ids, self.experts[choice], int(self.units[choice]), units)
            held = self._held(units)
            held[ticket.id] = ticket.units
            while len(held) > self.window:
                held.popitem(last=False)
            return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            self._windows.get(ticket.budget_units, {}).pop(ticket.id, None)

    def affordable(self, budget: float) -> list[str]:
        with self._lock:
            total = self._allowance(self._units(budget))
        return [e for e, u in zip(self.experts, self.units) if u <= total]

    def window_mean(self, budget: float) -> float:
        """Mean price (USD per 1M tokens) of the requests now in this budget's window."""
        with self._lock:
            held = self._held(self._units(budget))
            return sum(held.values()) / MICRO / len(held) if held else 0.0
