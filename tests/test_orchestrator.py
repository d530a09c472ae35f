from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.evaluation.aiq import aiq, cost_accuracy_curve, non_decreasing_hull
from leeroo_lib.routing.budget import MICRO, MODES, allocate
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies.baselines import OraclePolicy, PriorPolicy, RandomPolicy

COSTS = pd.Series({"small": 0.2, "medium": 0.26, "large": 0.6, "huge": 0.9, "closed": 20.0})


def synthetic(n: int, seed: int):
    """Questions (only the columns routing reads) and 1/0 outcomes for the five priced experts."""
    rng = np.random.default_rng(seed)
    questions = pd.DataFrame({"subject": rng.choice(["algebra", "law"], n), "idx": np.arange(n)})
    skill = np.array([0.55, 0.5, 0.7, 0.72, 0.85])
    scores = pd.DataFrame(
        (rng.random((n, len(skill))) < skill).astype(float),
        columns=COSTS.index,
        index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]),
    )
    return questions, scores


def mean_cost_units(routes: pd.Series) -> float:
    return np.rint(COSTS[routes].to_numpy() * MICRO).sum() / len(routes)


@pytest.mark.parametrize("mode", ["sequential", "global"])
def test_budget_is_never_exceeded(mode):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 60))
        proba = pd.DataFrame(rng.random((n, len(COSTS))), columns=COSTS.index)
        if seed % 2:  # ties everywhere: the case where the Lagrangian jumps
            proba = proba.round(1)
        for budget in [0.2, 0.2000001, 0.23, 0.6, 0.61, 1.0, 5.0, 25.0]:
            routes = allocate(proba, COSTS, budget, mode)
            assert mean_cost_units(routes) <= budget * MICRO + 1e-9
            assert COSTS[routes].mean() <= budget + 1e-12


def typed(value: float, digits: int) -> float:
    """A number as someone would type it: ``digits`` decimals."""
    return float(f"{value:.{digits}f}")


def test_mean_cost_never_exceeds_the_budget_as_typed():
    """Random pools (prices in whole micro-dollars), batches and budgets (up to 13 decimals) in both
    modes: the exact mean cost, prices and budget read as the decimals they were typed as, is never
    above the budget; a budget below the cheapest price (even by 1e-13) is refused, one equal to it is not."""
    for seed in range(150):
        rng = np.random.default_rng(seed)
        k, n = int(rng.integers(1, 6)), int(rng.integers(1, 40))
        costs = pd.Series(
            [typed(c, int(rng.integers(0, 7))) for c in rng.uniform(0.01, 30, k)], index=[f"e{j}" for j in range(k)]
        )
        proba = pd.DataFrame(rng.random((n, k)).round(int(rng.integers(1, 4))), columns=costs.index)
        price = float(rng.choice(costs))
        budget = float(
            rng.choice(
                [
                    typed(rng.uniform(costs.min(), 1.2 * costs.max()), int(rng.integers(1, 14))),
                    price,
                    price - 5e-13,
                    price + 5e-13,
                ]
            )
        )
        for mode in MODES:
            if Decimal(repr(budget)) < Decimal(repr(float(costs.min()))):
                with pytest.raises(ValueError, match="below the cheapest allowed expert"):
                    allocate(proba, costs, budget, mode)
                continue
            routes = allocate(proba, costs, budget, mode)
            assert sum(Decimal(repr(float(costs[e]))) for e in routes) <= Decimal(repr(budget)) * n


def test_a_budget_a_hair_below_a_price_cannot_buy_it():
    proba = pd.DataFrame({"cheap": [0.1], "better": [0.9]})
    costs = pd.Series({"cheap": 0.2, "better": 0.3})
    for mode in MODES:
        assert allocate(proba, costs, 0.2999999999995, mode).item() == "cheap"
        assert allocate(proba, costs, 0.3, mode).item() == "better"
    with pytest.raises(ValueError, match=r"whole micro-dollars .*\{'better': 0\.3000001\} are finer: round them"):
        allocate(proba, pd.Series({"cheap": 0.2, "better": 0.3000001}), 1.0)


def test_global_mode_spends_the_budget_up_to_one_query():
    questions, scores = synthetic(200, seed=1)
    policy = PriorPolicy().fit(questions, scores)  # query-blind: every query ties with every other
    proba = policy.predict_proba(questions)
    for budget in [0.3, 0.45, 0.75]:
        routes = allocate(proba, COSTS, budget, "global")
        assert budget - COSTS[routes].mean() < COSTS.max() / len(questions)


def test_budget_equal_to_the_cheapest_price_routes_everything_there():
    questions, scores = synthetic(50, seed=2)
    routes = Orchestrator(RandomPolicy(seed=0).fit(questions, scores), COSTS, "sequential").route(questions, 0.2)
    assert (routes == "small").all()


@pytest.mark.parametrize("mode", ["sequential", "global"])
def test_ample_budget_takes_the_most_likely_expert(mode):
    questions, scores = synthetic(40, seed=3)
    policy = RandomPolicy(seed=4).fit(questions, scores)
    routes = Orchestrator(policy, COSTS, mode).route(questions, budget=COSTS.max())
    assert routes.equals(policy.predict_proba(questions).idxmax(axis=1).rename("expert"))


def test_oracle_under_budget_beats_every_single_expert_it_can_afford():
    questions, scores = synthetic(300, seed=5)
    oracle = Orchestrator(OraclePolicy(scores), COSTS, "global")
    routes = oracle.route(questions, 0.6)
    accuracy = scores.to_numpy()[np.arange(len(routes)), COSTS.index.get_indexer(routes)].mean()
    assert accuracy > scores.loc[:, COSTS <= 0.6].mean().max() + 0.1


def test_budget_below_the_cheapest_expert_names_it():
    questions, scores = synthetic(10, seed=6)
    orchestrator = Orchestrator(PriorPolicy().fit(questions, scores), COSTS)
    with pytest.raises(ValueError, match=r"below the cheapest allowed expert, small at 0\.2"):
        orchestrator.route(questions, 0.1)
    with pytest.raises(ValueError, match=r"large at 0\.6"):
        orchestrator.route(questions, 0.5, experts=["large", "closed"])


def test_experts_restrict_the_pool_and_unknown_ones_are_named():
    questions, scores = synthetic(30, seed=7)
    orchestrator = Orchestrator(RandomPolicy(seed=1).fit(questions, scores), COSTS, "global")
    routes = orchestrator.route(questions, 0.5, experts=["small", "huge"])
    assert set(routes) <= {"small", "huge"}
    assert routes.index.equals(questions.index)
    with pytest.raises(ValueError, match=r"unknown expert\(s\) \['gpt-5'\]"):
        orchestrator.route(questions, 0.5, experts=["small", "gpt-5"])
    with pytest.raises(ValueError, match="unknown mode"):
        Orchestrator(orchestrator.policy, COSTS, mode="greedy")


def test_missing_price_is_named():
    questions, scores = synthetic(10, seed=8)
    with pytest.raises(ValueError, match=r"no cost given for expert\(s\) \['closed'\]"):
        Orchestrator(PriorPolicy().fit(questions, scores), COSTS.drop("closed"))


@pytest.mark.parametrize("mode", ["sequential", "global"])
def test_save_and_load_give_the_same_routes(tmp_path, mode):
    questions, scores = synthetic(80, seed=9)
    orchestrator = Orchestrator(PriorPolicy().fit(questions, scores), COSTS, mode)
    orchestrator.save(tmp_path / "orchestrator")
    reloaded = Orchestrator.load(tmp_path / "orchestrator")
    assert reloaded.mode == mode and reloaded.costs.equals(orchestrator.costs)
    for budget in [0.25, 0.7, 3.0]:
        assert reloaded.route(questions, budget).equals(orchestrator.route(questions, budget))


def test_load_without_a_saved_orchestrator_says_where_it_comes_from(tmp_path):
    with pytest.raises(FileNotFoundError, match="04_policy"):
        Orchestrator.load(tmp_path)


def test_hull_drops_points_under_it_and_flattens_after_the_best():
    x, y = non_decreasing_hull([0.2, 0.4, 0.6, 0.9, 1.0], [0.5, 0.52, 0.7, 0.8, 0.6])
    assert list(x) == [0.2, 0.6, 0.9] and list(y) == [0.5, 0.7, 0.8]


def test_aiq_of_known_curves():
    assert aiq([0.2, 0.9], [0.6, 0.6], 0.2, 0.9) == pytest.approx(0.6)
    # a straight rise from 0.5 to 0.7: the mean is 0.6; a point under the line changes nothing
    assert aiq([0.2, 0.5, 1.0], [0.5, 0.55, 0.7], 0.2, 1.0) == pytest.approx(0.6)
    # a router that starts at 0.6 scores nothing on [0.2, 0.6): half the range at 0.8
    assert aiq([0.6, 1.0], [0.8, 0.8], 0.2, 1.0) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="high > low"):
        aiq([0.2], [0.5], 1.0, 1.0)


def test_cost_accuracy_curve_reports_what_the_routes_cost_and_score():
    questions, scores = synthetic(100, seed=10)
    outcomes = pd.DataFrame(scores.to_numpy(), index=questions.index, columns=scores.columns)
    proba = OraclePolicy(scores).predict_proba(questions)
    curve = cost_accuracy_curve(proba, outcomes, COSTS, [0.2, 0.6, 20.0])
    assert (curve["cost"] <= curve["budget"] + 1e-12).all()
    assert curve["accuracy"].is_monotonic_increasing
    assert curve["accuracy"].iloc[-1] == pytest.approx(outcomes.max(axis=1).mean())


@pytest.mark.parametrize("mode", ["sequential", "global"])
def test_route_budgets_matches_route_at_each_budget(mode):
    questions, scores = synthetic(80, seed=9)
    orchestrator = Orchestrator(RandomPolicy(seed=2).fit(questions, scores), COSTS, mode)
    tiers = orchestrator.route_budgets(questions, [0.2, 0.5, 3.0], experts=["small", "large", "closed"])
    for budget, routes in tiers.items():
        assert routes.equals(orchestrator.route(questions, budget, experts=["small", "large", "closed"]))
