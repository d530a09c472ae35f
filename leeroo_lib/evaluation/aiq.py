"""Cost-accuracy curves of routers, and their AIQ (Hu et al. 2024, RouterBench, arXiv 2403.12031).

AIQ is the area under a router's non-decreasing convex hull of (cost, accuracy) points, divided by
the width of the cost range it is taken over. The hull is what a router reaches when it may mix two
of its operating points at random; below its cheapest point a router scores nothing. Two ranges
are reported, and they give different values (the rankings agree):

- ``aiq``: the formula printed in the RouterBench paper, over the pool's price range [cheapest,
  dearest expert], divided by its width;
- ``aiq_routerbench_code``: what RouterBench's released code computes (``evaluation/AIQ.py``,
  ``calc_AIQ``): the area over [0, X] divided by X, X the largest cost at which any router compared
  on the pool reaches its best accuracy. It is lower, by the share of [0, X] below the cheapest expert.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..routing.budget import allocate
from ..routing.orchestrator import routed_accuracy


def cost_accuracy_curve(
    proba: pd.DataFrame, outcomes: pd.DataFrame, costs: pd.Series, budgets, mode: str = "global"
) -> pd.DataFrame:
    """One row per budget: budget, mean cost and accuracy of the routes ``proba`` gives under it."""
    rows = []
    for budget in budgets:
        routes = allocate(proba, costs, budget, mode)
        rows.append(
            {
                "budget": budget,
                "cost": float(costs[routes].mean()),
                "accuracy": routed_accuracy(routes, outcomes[proba.columns]),
            }
        )
    return pd.DataFrame(rows)


def non_decreasing_hull(cost, accuracy) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the upper convex hull of the points, cut at its highest accuracy (beyond it the
    router would keep its best point, so the curve stays flat)."""
    points = pd.DataFrame({"cost": cost, "accuracy": accuracy}).groupby("cost")["accuracy"].max()
    hull: list[tuple[float, float]] = []
    for point in zip(points.index, points.to_numpy()):
        while len(hull) >= 2:
            (ax, ay), (bx, by) = hull[-2], hull[-1]
            if (bx - ax) * (point[1] - ay) - (by - ay) * (point[0] - ax) < 0:
                break
            hull.pop()
        hull.append(point)
    x, y = map(np.asarray, zip(*hull))
    top = int(np.argmax(y)) + 1
    return x[:top], y[:top]


def zero_router(outcomes: pd.DataFrame, costs: pd.Series, budget: float) -> tuple[np.ndarray, dict[str, float]]:
    """RouterBench's zero router at ``budget``: the best random mix of two single experts whose mean price
    is ``budget`` (the non-decreasing convex hull of the experts' (price, accuracy) points, read there). A
    router earns its keep only above it. ``outcomes``: questions x experts, every cell measured. Returns
    each question's expected outcome under the mix, and the mix (expert -> share of the questions)."""
    prices = costs[outcomes.columns].astype(float)
    accuracy = outcomes.mean()
    x, y = non_decreasing_hull(prices.to_numpy(), accuracy.to_numpy())
    near = np.isclose(budget, x, rtol=1e-9, atol=0)  # a mean of prices lands a rounding error off a price
    budget = float(x[near][0]) if near.any() else budget
    if budget < x[0]:
        raise ValueError(f"budget {budget} is below the cheapest expert, {prices.idxmin()} at {x[0]}: raise it")

    def vertex(i: int) -> str:  # the most accurate expert at the hull's i-th price
        return accuracy[prices == x[i]].idxmax()

    i = int(np.searchsorted(x, budget, side="right")) - 1
    if i == len(x) - 1:
        mix = {vertex(i): 1.0}
    else:
        share = float((budget - x[i]) / (x[i + 1] - x[i]))
        mix = {vertex(i): 1.0 - share, vertex(i + 1): share} if share > 0 else {vertex(i): 1.0}
    expected = sum(weight * outcomes[expert].to_numpy(float) for expert, weight in mix.items())
    return expected, mix


def aiq(cost, accuracy, low: float, high: float) -> float:
    """Area under the non-decreasing convex hull over [low, high], divided by high - low (flat after
    the hull's last point, zero before its first)."""
    if not high > low:
        raise ValueError(f"AIQ needs a cost range with high > low, got [{low}, {high}]")
    x, y = non_decreasing_hull(cost, accuracy)
    start = max(low, x[0])
    if start >= high:
        return 0.0
    grid = np.concatenate([[start], x[(x > start) & (x < high)], [high]])
    return float(np.trapezoid(np.interp(grid, x, y), grid) / (high - low))


def budget_grid(prices: pd.Series, n: int) -> np.ndarray:
    """``n`` budgets spaced evenly in log cost between a pool's cheapest and dearest expert, plus
    each expert's own price (where a single expert is a point of the curve)."""
    return np.unique(np.concatenate([np.geomspace(prices.min(), prices.max(), n), prices.to_numpy()]))


def router_curves(
    probas: dict[str, pd.DataFrame],
    outcomes: pd.DataFrame,
    costs: pd.Series,
    pools: dict[str, list[str]],
    n_budgets: int,
    mode: str = "global",
) -> pd.DataFrame:
    """Cost-accuracy curves of several routers (name -> predicted probabilities) in several pools
    (name -> experts), each pool judged on the questions where all its experts were measured:
    columns router, pool, budget, cost, accuracy. A pool with no such question has no curve (a warning
    names it); when no pool has one, there is nothing to judge and it is an error."""
    curves = []
    for pool, experts in pools.items():
        judged = outcomes[experts].notna().all(axis=1).to_numpy()
        if not judged.any():
            warnings.warn(
                f"pool {pool!r}: none of the {len(outcomes)} questions has an outcome of every one of its experts "
                f"{experts}, so it gets no curve and no AIQ; score its experts on common questions to judge it",
                stacklevel=2,
            )
            continue
        curves += [
            cost_accuracy_curve(
                proba.loc[judged, experts], outcomes[judged], costs, budget_grid(costs[experts], n_budgets), mode
            ).assign(router=name, pool=pool)
            for name, proba in probas.items()
        ]
    if not curves:
        raise ValueError(f"no pool of {list(pools)} has a question that all its experts were measured on")
    return pd.concat(curves, ignore_index=True)[["router", "pool", "budget", "cost", "accuracy"]]


def routerbench_code_range(curves: pd.DataFrame) -> float:
    """X of RouterBench's code for the routers of one pool: the largest cost at which any of them
    reaches its own best accuracy (its hull keeps equal-accuracy points, so the last one counts)."""
    return float(
        max(
            curve.loc[curve["accuracy"] == curve["accuracy"].max(), "cost"].max()
            for _, curve in curves.groupby("router", sort=False)
        )
    )


def aiq_table(curves: pd.DataFrame, costs: pd.Series, pools: dict[str, list[str]]) -> pd.DataFrame:
    """AIQ of every (router, pool) curve: columns router, pool, aiq (the paper's formula over the
    pool's price range) and aiq_routerbench_code (RouterBench code's, over [0, X]; module docstring)."""
    code_range = {pool: routerbench_code_range(rows) for pool, rows in curves.groupby("pool", sort=False)}
    rows = []
    for (router, pool), curve in curves.groupby(["router", "pool"], sort=False):
        prices = costs[pools[pool]]
        rows.append(
            {
                "router": router,
                "pool": pool,
                "aiq": aiq(curve["cost"], curve["accuracy"], prices.min(), prices.max()),
                "aiq_routerbench_code": aiq(curve["cost"], curve["accuracy"], 0.0, code_range[pool]),
            }
        )
    return pd.DataFrame(rows)
