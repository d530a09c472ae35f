"""The orchestrator: a fitted policy plus the experts' prices, routing questions under a budget
(Eq. 1, ``budget``), and what its routes score against recorded outcomes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..validation import check_budget, check_budgets, check_expert_names, check_question_frame
from .budget import allocate, check_affordable, check_costs, check_mode
from .policies import POLICIES, policy_class


class Orchestrator:
    """A fitted policy plus the experts' prices: routes a batch of questions under a budget.

    ``pools`` (pool name -> served experts, from notebook 02's universe) names the expert sets a
    caller routes over with ``route(questions, budget, pool="open")``; the policy's experts are their union.
    """

    def __init__(self, policy, costs: pd.Series, mode: str = "sequential", pools: dict[str, list[str]] | None = None):
        check_mode(mode)
        if not hasattr(policy, "experts_"):
            raise ValueError(
                f"the policy ({type(policy).__name__}) is not fitted: call policy.fit(questions, scores) "
                "first, or load a saved orchestrator with Orchestrator.load(path)"
            )
        self.policy = policy
        self.costs = check_costs(costs, policy.experts_)
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
            check_affordable(self.costs[served], budget)
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


def picked_outcomes(routes: pd.Series, outcomes: pd.DataFrame) -> np.ndarray:
    """eval of the routed expert on each question: ``outcomes`` (questions x experts) is indexed
    like ``routes``, which names one of its columns per question."""
    unknown = sorted(set(routes) - set(outcomes.columns))
    if unknown:
        raise ValueError(f"routes name experts {unknown} that the score matrix has no column for")
    cols = outcomes.columns.get_indexer(routes.reindex(outcomes.index).to_numpy())
    picked = outcomes.to_numpy(np.float64)[np.arange(len(outcomes)), cols]
    if np.isnan(picked).any():
        raise ValueError(
            "a routed expert has no recorded result on some question: judge routes on fully scored questions"
        )
    return picked


def routed_accuracy(routes: pd.Series, outcomes: pd.DataFrame) -> float:
    """Mean measured outcome of the routed expert per question (``outcomes`` indexed like ``routes``)."""
    return float(picked_outcomes(routes, outcomes).mean())
