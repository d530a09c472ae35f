"""A goal (one of the profile's ``evaluation.goals``): routers against the reference expert at one budget, on the
same questions, in both allocation modes, with a paired bootstrap interval of the difference. Notebook 04
judges it on the test split, ``leeroo cv`` on held-out folds of the training split.
``sequential_orders`` measures how much the paper's sequential rule owes to the order the questions arrive in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..routing.budget import MODES, allocate
from ..routing.orchestrator import picked_outcomes
from .evaluate import bootstrap_ci


@dataclass(frozen=True)
class GoalResult:
    """``table``: one row per router and mode (mean cost, accuracy, points over the reference and the 95%
    interval of that difference); ``correct``: per (router, mode), whether the routed expert answered each
    judged question; ``reference``: the reference expert's outcome on each of them; ``reference_name``: who
    it is."""

    table: pd.DataFrame
    correct: dict[tuple[str, str], np.ndarray]
    reference: np.ndarray
    reference_name: str


def goal_evaluation(
    probas: dict[str, pd.DataFrame],
    outcomes: pd.DataFrame,
    costs: pd.Series,
    members: list[str],
    *,
    reference: str | None,
    budget: float,
    seed: int,
) -> GoalResult:
    """Each router's predictions (``probas``: name -> questions x experts) routed over the pool's
    ``members`` under ``budget`` in every mode, judged on the questions where every member was measured
    (``outcomes``: questions x experts, indexed like the predictions), against ``reference`` alone on them
    (None: the member the budget affords that is right most often on them, as Table 1 picks it)."""
    judged = outcomes[members].notna().all(axis=1).to_numpy()
    if reference is None:
        affordable = [e for e in members if costs[e] <= budget + 1e-12]
        if not affordable:
            raise ValueError(f"budget {budget} affords none of {members}: raise it to {costs[members].min()}")
        reference = outcomes.loc[judged, affordable].mean().idxmax()
    baseline = outcomes.loc[judged, reference].to_numpy()
    correct, rows = {}, []
    for name, proba in probas.items():
        for mode in MODES:
            routes = allocate(proba.loc[judged, members], costs, budget, mode)
            correct[name, mode] = picked_outcomes(routes, outcomes[judged])
            low, high = bootstrap_ci(correct[name, mode] - baseline, seed)
            rows.append(
                {
                    "router": name,
                    "mode": mode,
                    "mean cost": costs[routes].mean(),
                    "accuracy": correct[name, mode].mean(),
                    "points over reference": 100 * (correct[name, mode].mean() - baseline.mean()),
                    "CI low": 100 * low,
                    "CI high": 100 * high,
                }
            )
    return GoalResult(pd.DataFrame(rows), correct, baseline, reference)


def sequential_orders(
    proba: pd.DataFrame,
    outcomes: pd.DataFrame,
    costs: pd.Series,
    members: list[str],
    *,
    budget: float,
    n_orders: int,
    seed: int,
) -> np.ndarray:
    """Sequential allocation (the paper's rule) spends the budget as the questions arrive, so what it scores
    depends on their order: its accuracy on the judged questions (as ``goal_evaluation`` judges them) in each of
    ``n_orders`` seeded random orders."""
    judged = outcomes[members].notna().all(axis=1).to_numpy()
    proba, outcomes = proba.loc[judged, members], outcomes[judged]
    rng = np.random.default_rng(seed)
    accuracies = []
    for _ in range(n_orders):
        order = rng.permutation(len(proba))
        routes = allocate(proba.iloc[order], costs, budget, "sequential")
        accuracies.append(picked_outcomes(routes, outcomes).mean())
    return np.array(accuracies)
