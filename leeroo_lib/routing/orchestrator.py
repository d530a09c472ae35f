"""The orchestrator: a fitted policy plus the experts' prices, routing questions under a budget
(Eq. 1, ``budget``), and what its routes score against recorded outcomes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..validation import check_budget, check_budgets, check_expert_names, check_question_frame
from .budget import assign, check_buys_cheapest, check_costs, check_mode
from .policies import policy_class


class Orchestrator:
    """Fitted policies plus the experts' prices: routes a batch of questions under a budget.

    ``policy`` is one fitted policy, or a list of them, one per benchmark (their experts never overlap:
    an expert answered one benchmark). ``pools`` (pool name -> served experts, from notebook 02's universe)
    names the expert sets a caller routes over with ``route(questions, budget, pool="open")``; each pool's
    experts belong to one policy, which reads the questions routed over it.
    """

    def __init__(self, policy, costs: pd.Series, mode: str = "sequential", pools: dict[str, list[str]] | None = None):
        check_mode(mode)
        self.policies = list(policy) if isinstance(policy, (list, tuple)) else [policy]
        unfitted = [type(p).__name__ for p in self.policies if not hasattr(p, "experts_")]
        if unfitted or not self.policies:
            raise ValueError(
                f"the policy {unfitted or '(none given)'} is not fitted: call policy.fit(questions, scores) "
                "first, or load a saved orchestrator with Orchestrator.load(path)"
            )
        experts = [e for p in self.policies for e in p.experts_]
        shared = sorted({e for e in experts if experts.count(e) > 1})
        if shared:
            raise ValueError(f"experts {shared} belong to more than one policy: give each benchmark's policy its own")
        self.experts = experts
        self.costs = check_costs(costs, experts)
        self.mode = mode
        self.pools = {}
        for name, served in (pools or {}).items():
            self.pools[name] = self._one_policy(check_expert_names(served, experts, f"pool '{name}'"), name)

    @property
    def policy(self):
        """The policy of an orchestrator that holds one."""
        if len(self.policies) > 1:
            raise AttributeError(f"this orchestrator holds {len(self.policies)} policies: use policy_for(experts)")
        return self.policies[0]

    def policy_for(self, experts: list[str]):
        """The policy that predicts every one of ``experts``."""
        for policy in self.policies:
            if set(experts) <= set(policy.experts_):
                return policy
        raise ValueError(
            f"experts {list(experts)} belong to policies of different benchmarks: route each benchmark's experts "
            f"on their own (pools: {sorted(self.pools)})"
        )

    def _one_policy(self, experts: list[str], pool: str) -> list[str]:
        try:
            self.policy_for(experts)
        except ValueError as err:
            raise ValueError(f"pool '{pool}': {err}") from None
        return experts

    def served(self, pool: str) -> list[str]:
        """The experts ``pool`` serves; an unknown pool is an error naming the ones there are."""
        if pool not in self.pools:
            raise ValueError(
                f"unknown pool '{pool}': this orchestrator serves the pools {sorted(self.pools)} (a service routes "
                "over service.pool of its endpoints file)"
            )
        return self.pools[pool]

    def _pool(self, pool: str | None, experts) -> list[str]:
        if pool is not None and experts is not None:
            raise ValueError("pass a pool name or a list of experts, not both")
        if pool is not None:
            if not isinstance(pool, str):
                raise TypeError(
                    f"pool must be the name of a pool (one of {sorted(self.pools)}), got {pool!r}; "
                    "to route over a list of experts pass experts=[...]"
                )
            return self.served(pool)
        if experts is None:
            if len(self.policies) > 1:
                raise ValueError(
                    f"this orchestrator routes {len(self.policies)} benchmarks: name a pool (one of "
                    f"{sorted(self.pools)}) or the experts to route over"
                )
            return list(self.experts)
        return check_expert_names(experts, self.experts)

    def route(self, questions: pd.DataFrame, budget: float, pool: str | None = None, experts=None) -> pd.Series:
        """The expert for each question (indexed like ``questions``); mean cost <= ``budget``
        (USD per 1M tokens). ``pool`` routes over one pool's served experts, ``experts`` over any
        subset of one policy's; neither: over all of them (an orchestrator of one policy). No question:
        an empty Series."""
        check_budget(budget)
        return self._routes(questions, [budget], pool, experts)[budget]

    def route_budgets(
        self, questions: pd.DataFrame, budgets, pool: str | None = None, experts=None
    ) -> dict[float, pd.Series]:
        """``route`` at several budgets, reading the questions with the policy only once. Every
        argument is checked before the policy reads a question."""
        return self._routes(questions, check_budgets(budgets), pool, experts)

    def _routes(self, questions: pd.DataFrame, budgets: list, pool: str | None, experts) -> dict[float, pd.Series]:
        """The routes at ``budgets`` (numbers, as the public calls checked): each argument checked here once."""
        check_question_frame(questions)
        served = self._pool(pool, experts)
        policy = self.policy_for(served)
        for budget in budgets:
            check_buys_cheapest(self.costs[served], budget)
        proba = policy.predict_proba(questions)[served]
        return {budget: assign(proba, self.costs, budget, self.mode) for budget in budgets}

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, policy in enumerate(self.policies):
            policy.save(path / f"policy_{i}")
        (path / "orchestrator.json").write_text(
            json.dumps(
                {
                    "mode": self.mode,
                    "policies": [type(p).__name__ for p in self.policies],
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
        kinds = saved.get("policies")
        if kinds is None:
            raise ValueError(
                f"{path} was saved with policies {saved.get('policy')!r} in a layout that cannot be loaded here "
                "(loadable: a list of policy class names); refit it with notebooks/04_policy.ipynb"
            )
        try:
            classes = [policy_class(kind) for kind in kinds]
        except ValueError as err:
            raise ValueError(f"{path} cannot be loaded here: {err}; refit it with notebooks/04_policy.ipynb") from err
        try:
            policies = [kind.load(path / f"policy_{i}") for i, kind in enumerate(classes)]
        except OSError as err:  # a missing file, or a model folder transformers cannot read
            raise FileNotFoundError(
                f"{path} holds an incomplete orchestrator: {err.filename or err} is missing; "
                "save it again with notebooks/04_policy.ipynb"
            ) from err
        return cls(
            policies, pd.Series(saved["costs"], name="cost_per_1m_usd"), mode=saved["mode"], pools=saved.get("pools")
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
