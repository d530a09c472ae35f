"""Universe construction (Eq. 2, Algorithm 1 of the paper): which k experts to serve.

S(U) = mean over questions of max_{j in U} eval(e_j(q_i)). S is monotone and submodular (a
facility-location function), so adding at each step the expert with the largest gain reaches at
least 1 - 1/e of the best k-subset (Nemhauser, Wolsey & Fisher 1978). Under a budget on the summed
serving cost of U, the larger of cost-benefit greedy (gain per dollar) and the best affordable single
expert keeps at least (1 - 1/e)/2 of the best budgeted subset (Krause & Guestrin 2005; Khuller,
Moss & Naor 1999 for coverage).

Missing values: a question (row) with no value for one of the candidate experts (columns) is
dropped, never filled, since a filled 0 or 1 would invent a measurement. ``complete_questions``
applies this rule; ``greedy_universe`` and ``exact_universe`` warn with the number dropped.
"""

from __future__ import annotations

import warnings
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd

from ..data.suites import paper_rows

# Exact search visits every k-subset; past this many it would take minutes, use the greedy.
EXACT_MAX_SUBSETS = 200_000


def complete_questions(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``scores`` with a value for every column, checked to lie in [0, 1]."""
    if scores.shape[0] == 0 or scores.shape[1] == 0:
        raise ValueError(
            f"empty score matrix ({scores.shape[0]} questions x {scores.shape[1]} experts): pass questions "
            "as rows and at least one expert as a column, e.g. scores[served_experts(universe)['open']]"
        )
    complete = scores.dropna(how="any")
    if complete.empty:
        raise ValueError(
            f"none of the {len(scores)} questions has a value for all {scores.shape[1]} experts "
            f"{list(scores.columns)}: choose experts measured on the same questions"
        )
    values = complete.to_numpy(dtype=float)
    if values.min() < 0 or values.max() > 1:
        raise ValueError(
            f"scores must lie in [0, 1] (eval of an expert on a question); found values in "
            f"[{values.min()}, {values.max()}]"
        )
    return complete


def _values(scores: pd.DataFrame) -> np.ndarray:
    """The complete rows as a float matrix, warning when the missing-value rule dropped some."""
    complete = complete_questions(scores)
    dropped = len(scores) - len(complete)
    if dropped:
        warnings.warn(
            f"dropped {dropped} of {len(scores)} questions with a missing value for one of the "
            f"{scores.shape[1]} candidate experts; S(U) is over the other {len(complete)}",
            stacklevel=3,
        )
    return complete.to_numpy(dtype=float)


def _check_k(k: int):
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (the size of the universe), got {k!r}")


def universe_score(scores: pd.DataFrame, experts) -> float:
    """S(U): mean over the complete questions of the best eval among ``experts``."""
    return float(complete_questions(scores)[list(experts)].max(axis=1).mean())


def _cost_vector(experts, costs: pd.Series, budget: float) -> np.ndarray:
    missing = [e for e in experts if e not in costs.index]
    if missing:
        raise ValueError(
            f"no cost for expert(s) {missing}: costs has {sorted(costs.index)}; "
            "pass expert_costs(load_experts()) or add their price to data/experts.csv"
        )
    cost = costs.reindex(experts).to_numpy(dtype=float)
    if not (cost > 0).all():
        raise ValueError(f"costs must be positive numbers, got {dict(zip(experts, cost))}")
    if budget < cost.min():
        cheapest = experts[int(cost.argmin())]
        raise ValueError(
            f"budget {budget} is below the cheapest expert ({cheapest}, {cost.min()}): no universe fits; "
            f"raise the budget to at least {cost.min()}"
        )
    return cost


def greedy_universe(
    scores: pd.DataFrame, k: int, costs: pd.Series | None = None, budget: float | None = None
) -> list[tuple[str, float]]:
    """Algorithm 1: the experts in the order added, with S(U) after each addition.

    Columns are experts, rows questions, values in [0, 1]. Stops at k experts or when no expert
    adds anything. With ``costs`` (per expert, e.g. ``expert_costs(load_experts())``) and ``budget``,
    U must also keep its summed cost within the budget: cost-benefit greedy, or the best affordable
    single expert when that scores higher. Ties go to the earlier column.
    """
    _check_k(k)
    if (costs is None) != (budget is None):
        raise ValueError("costs and budget go together: pass both for the cost-aware universe, or neither")
    experts = list(scores.columns)
    cost = None if costs is None else _cost_vector(experts, costs, budget)
    values = _values(scores)
    n_questions, n_experts = values.shape

    best = np.zeros(n_questions)  # max eval over the chosen experts, per question
    spent = 0.0
    steps = []
    for _ in range(min(k, n_experts)):
        open_rows = best < 1  # only these can still gain
        gain_matrix = values[open_rows]
        np.subtract(gain_matrix, best[open_rows, None], out=gain_matrix)
        np.maximum(gain_matrix, 0, out=gain_matrix)
        gains = gain_matrix.sum(axis=0)
        if cost is not None:
            gains = np.where(spent + cost <= budget, gains / cost, 0.0)
        j = int(gains.argmax())
        if gains[j] <= 0:
            break
        np.maximum(best, values[:, j], out=best)
        spent += 0.0 if cost is None else cost[j]
        steps.append((experts[j], float(best.mean())))

    if cost is not None:
        singles = np.where(cost <= budget, values.mean(axis=0), -1.0)
        j = int(singles.argmax())
        if singles[j] > (steps[-1][1] if steps else 0.0):
            steps = [(experts[j], float(singles[j]))]
    return steps


def exact_universe(scores: pd.DataFrame, k: int) -> tuple[tuple[str, ...], float]:
    """The best k-subset by exhaustive search (for small pools): its experts and S(U)."""
    _check_k(k)
    values = _values(scores)
    n_experts = values.shape[1]
    size = min(k, n_experts)
    if comb(n_experts, size) > EXACT_MAX_SUBSETS:
        raise ValueError(
            f"exact search over {comb(n_experts, size):,} subsets ({n_experts} experts, k={size}) is too "
            f"slow (limit {EXACT_MAX_SUBSETS:,}): use greedy_universe, or fewer experts or a smaller k"
        )
    subset = max(combinations(range(n_experts), size), key=lambda c: values[:, c].max(axis=1).sum())
    return tuple(scores.columns[j] for j in subset), float(values[:, subset].max(axis=1).mean())


def greedy_vs_exact(scores: pd.DataFrame, max_k: int) -> pd.DataFrame:
    """Per k <= max_k: S of the greedy universe, of the best k-subset, their ratio (>= 1 - 1/e)."""
    steps = greedy_universe(scores, max_k)
    rows = []
    for k in range(1, min(max_k, scores.shape[1]) + 1):
        exact_experts, exact_s = exact_universe(scores, k)
        greedy_s = steps[min(k, len(steps)) - 1][1]
        rows.append(
            {
                "k": k,
                "greedy_S": greedy_s,
                "exact_S": exact_s,
                "greedy_over_exact": greedy_s / exact_s,
                "exact_experts": ", ".join(exact_experts),
            }
        )
    return pd.DataFrame(rows)


def universe_table(steps: list[tuple[str, float]], pool: str, costs: pd.Series) -> pd.DataFrame:
    """A greedy order as rows (k, expert_added, S, gain, cost_per_1m_usd, pool): the universe artifact."""
    table = pd.DataFrame(steps, columns=["expert_added", "S"])
    table.insert(0, "k", np.arange(1, len(table) + 1))
    table["gain"] = table["S"].diff().fillna(table["S"])
    table["cost_per_1m_usd"] = costs.reindex(table["expert_added"]).to_numpy()
    table["pool"] = pool
    return table


def cost_aware_table(scores: pd.DataFrame, k: int, costs: pd.Series, budgets) -> pd.DataFrame:
    """Per budget on the summed serving cost: the cost-aware universe, what it costs and its S(U).
    Budgets below the cheapest expert of ``scores`` afford no universe and are left out."""
    rows = []
    cheapest = costs.reindex(scores.columns).min()
    for budget in [b for b in budgets if b >= cheapest]:
        experts = [e for e, _ in greedy_universe(scores, k, costs=costs, budget=budget)]
        rows.append(
            {
                "budget": budget,
                "n_experts": len(experts),
                "cost_per_1m_usd": costs[experts].sum(),
                "S": universe_score(scores, experts) if experts else 0.0,
                "experts": ", ".join(experts),
            }
        )
    return pd.DataFrame(rows)


def chance_oracle(k, n_choices=4):
    """Chance that at least one of k independent uniform guessers is right, 1 - (1 - 1/n)^k, averaged over
    questions when ``n_choices`` gives each question's number of options (MMLU-Pro: 2 to 10)."""
    miss = 1 - 1 / np.atleast_1d(np.asarray(n_choices, dtype=float))
    chance = 1 - (miss[None, :] ** np.atleast_1d(k)[:, None]).mean(axis=1)
    return chance if np.ndim(k) else float(chance[0])


def oracle_table(pools: dict[str, pd.DataFrame], n_choices: dict[str, object] | None = None) -> pd.DataFrame:
    """Per pool: S with every expert (the oracle) beside the best single expert, the chance that one of
    as many uniform guessers is right (``n_choices``: pool -> its questions' numbers of options, default
    four), and the paper's approximate oracle."""
    n_choices = n_choices or {}
    rows = []
    for pool, scores in pools.items():
        complete = complete_questions(scores)
        rows.append(
            {
                "pool": pool,
                "n_experts": scores.shape[1],
                "n_questions": len(complete),
                "oracle_S": universe_score(complete, complete.columns),
                "best_single_S": complete.mean().max(),
                "chance_oracle": chance_oracle(scores.shape[1], n_choices.get(pool, 4)),
            }
        )
    paper = paper_rows()
    oracle = paper[paper["system"].str.startswith("Oracle")]
    rows.append({"pool": f"paper: {oracle['system'].item()}", "oracle_S": oracle["accuracy"].item()})
    return pd.DataFrame(rows).astype({"n_experts": "Int64", "n_questions": "Int64"})
