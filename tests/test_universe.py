import math

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.routing.universe import (
    chance_oracle,
    complete_questions,
    cost_aware_table,
    exact_universe,
    greedy_universe,
    greedy_vs_exact,
    oracle_table,
    universe_score,
    universe_table,
)


@pytest.fixture
def trap():
    """Six questions where greedy's first pick (A, 4 right) blocks the best pair (B + C, all 6).
    D is right only where A is, so it never adds anything after A."""
    return pd.DataFrame(
        {
            "A": [1, 1, 1, 1, 0, 0],
            "B": [1, 1, 0, 0, 1, 0],
            "C": [0, 0, 1, 1, 0, 1],
            "D": [1, 1, 0, 0, 0, 0],
        },
        dtype=float,
    )


def random_scores(seed, n_questions=40, n_experts=7, p=0.4):
    rng = np.random.default_rng(seed)
    values = (rng.random((n_questions, n_experts)) < p).astype(float)
    return pd.DataFrame(values, columns=[f"e{j}" for j in range(n_experts)])


def test_greedy_order_and_scores_on_a_known_matrix(trap):
    steps = greedy_universe(trap, k=4)
    assert [e for e, _ in steps] == ["A", "B", "C"]  # D adds nothing: stop before k
    assert [s for _, s in steps] == pytest.approx([4 / 6, 5 / 6, 1.0])


def test_exact_beats_greedy_where_greedy_is_trapped(trap):
    experts, s = exact_universe(trap, k=2)
    assert set(experts) == {"B", "C"} and s == 1.0
    table = greedy_vs_exact(trap, max_k=2).set_index("k")
    assert table.loc[1, "greedy_over_exact"] == 1.0
    assert table.loc[2, "greedy_over_exact"] == pytest.approx(5 / 6)


@pytest.mark.parametrize("seed", range(20))
def test_greedy_is_exact_for_k1_and_within_1_minus_1_over_e(seed):
    scores = random_scores(seed)
    table = greedy_vs_exact(scores, max_k=4)
    assert table.loc[0, "greedy_S"] == table.loc[0, "exact_S"]  # k = 1: the best single expert
    assert (table["greedy_over_exact"] >= 1 - 1 / math.e).all()
    assert (table["greedy_over_exact"] <= 1 + 1e-12).all()


def test_greedy_is_exact_when_experts_answer_disjoint_questions():
    # Each expert alone on its own block of questions: greedy takes the largest blocks, which is optimal.
    owner = np.repeat(np.arange(5), [9, 7, 5, 3, 1])
    scores = pd.DataFrame(np.eye(5)[owner], columns=list("abcde"))
    table = greedy_vs_exact(scores, max_k=5)
    assert (table["greedy_S"] == table["exact_S"]).all()
    assert [e for e, _ in greedy_universe(scores, k=3)] == ["a", "b", "c"]


@pytest.mark.parametrize("seed", range(5))
def test_s_never_decreases_and_last_step_is_the_oracle(seed):
    scores = random_scores(seed, p=0.2)
    s = [v for _, v in greedy_universe(scores, k=scores.shape[1])]
    assert np.all(np.diff(s) > 0)
    assert s[-1] == pytest.approx(universe_score(scores, scores.columns))


def test_fractional_scores_use_the_best_value_per_question():
    scores = pd.DataFrame({"x": [0.5, 0.2], "y": [0.1, 0.9]})
    assert greedy_universe(scores, k=2) == [("y", pytest.approx(0.5)), ("x", pytest.approx(0.7))]


def test_missing_values_drop_the_question_with_a_warning(trap):
    scores = trap.copy()
    scores.loc[4, "D"] = np.nan  # the question only B gets right
    assert len(complete_questions(scores)) == 5
    with pytest.warns(UserWarning, match="dropped 1 of 6 questions"):
        steps = greedy_universe(scores, k=3)
    assert steps[-1][1] == 1.0 and [e for e, _ in steps][:1] == ["A"]


def test_errors_name_the_problem(trap):
    with pytest.raises(ValueError, match="empty score matrix"):
        greedy_universe(trap.iloc[:0], k=1)
    with pytest.raises(ValueError, match="empty score matrix"):
        greedy_universe(trap[[]], k=1)
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="k must be"):
            greedy_universe(trap, k=k)
    with pytest.raises(ValueError, match="none of the 2 questions has a value for all 2 experts"):
        greedy_universe(pd.DataFrame({"a": [1.0, np.nan], "b": [np.nan, 0.0]}), k=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        greedy_universe(trap * 2, k=1)
    with pytest.raises(ValueError, match="too slow"):
        exact_universe(random_scores(0, n_experts=40), k=10)


def test_cost_errors_name_the_problem(trap):
    costs = pd.Series({"A": 1.0, "B": 0.5, "C": 0.5, "D": 0.1})
    with pytest.raises(ValueError, match=r"no cost for expert\(s\) \['D'\]"):
        greedy_universe(trap, k=2, costs=costs.drop("D"), budget=2.0)
    with pytest.raises(ValueError, match="below the cheapest expert \\(D, 0.1\\)"):
        greedy_universe(trap, k=2, costs=costs, budget=0.05)
    with pytest.raises(ValueError, match="go together"):
        greedy_universe(trap, k=2, costs=costs)
    with pytest.raises(ValueError, match="positive"):
        greedy_universe(trap, k=2, costs=costs.replace(0.1, 0.0), budget=2.0)


def test_cost_aware_takes_gain_per_dollar_within_budget(trap):
    costs = pd.Series({"A": 1.0, "B": 0.5, "C": 0.5, "D": 0.1, "unused": 9.0})  # extra names are fine
    steps = greedy_universe(trap, k=4, costs=costs, budget=1.0)
    # gain per dollar: D (2/6 / 0.1) first, then C (3/6 / 0.5); B no longer fits (0.1 + 0.5 + 0.5 > 1).
    assert [e for e, _ in steps] == ["D", "C"]
    assert steps[-1][1] == pytest.approx(5 / 6)
    table = cost_aware_table(trap, 4, costs, budgets=[0.1, 1.0, 2.5])
    assert (table["cost_per_1m_usd"] <= table["budget"]).all()
    assert table["S"].is_monotonic_increasing and table["S"].iloc[-1] == 1.0


def test_cost_aware_falls_back_to_the_best_single_expert():
    # The cheap expert has the best gain per dollar but then the good one no longer fits.
    scores = pd.DataFrame({"cheap": [1] + [0] * 9, "good": [0] + [1] * 9}, dtype=float)
    costs = pd.Series({"cheap": 0.1, "good": 10.0})
    assert greedy_universe(scores, k=2, costs=costs, budget=10.0) == [("good", pytest.approx(0.9))]
    assert [e for e, _ in greedy_universe(scores, k=2, costs=costs, budget=10.1)] == ["cheap", "good"]


def test_universe_table_and_oracle_table(trap):
    costs = pd.Series({"A": 1.0, "B": 0.5, "C": 0.5, "D": 0.1})
    table = universe_table(greedy_universe(trap, k=4), "toy", costs)
    assert list(table["k"]) == [1, 2, 3] and list(table["expert_added"]) == ["A", "B", "C"]
    assert table["gain"].sum() == pytest.approx(1.0) and (table["pool"] == "toy").all()
    assert list(table["cost_per_1m_usd"]) == [1.0, 0.5, 0.5]
    oracle = oracle_table({"toy": trap}).set_index("pool")
    assert oracle.loc["toy", "oracle_S"] == 1.0 and oracle.loc["toy", "best_single_S"] == pytest.approx(4 / 6)
    assert oracle.filter(like="paper", axis=0)["oracle_S"].item() == pytest.approx(0.98)


def test_chance_oracle():
    assert chance_oracle(1) == 0.25
    assert chance_oracle(12) == pytest.approx(1 - 0.75**12)
    assert np.all(np.diff(chance_oracle(np.arange(1, 14))) > 0)
