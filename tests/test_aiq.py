import pandas as pd
import pytest

from leeroo_lib.evaluation.aiq import aiq_table, router_curves, routerbench_code_range, zero_router

PRICES = pd.Series({"cheap": 0.2, "mid": 0.6, "dear": 1.0})
POOLS = {"p": list(PRICES.index)}


def curves(points: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"router": router, "pool": "p", "budget": cost, "cost": cost, "accuracy": accuracy}
            for router, rows in points.items()
            for cost, accuracy in rows
        ]
    )


# Worked by hand. Router a: hull (0.2, 0.5) -> (0.6, 0.7) ((0.4, 0.55) lies under it), flat at 0.7 after:
# area over [0.2, 1.0] = 0.4 * (0.5 + 0.7) / 2 + 0.4 * 0.7 = 0.52. Router b: hull (0.2, 0.4) -> (0.5, 0.6),
# flat after its best point (its dearer, worse point is dropped): area = 0.3 * 0.5 + 0.5 * 0.6 = 0.45.
A = [(0.2, 0.5), (0.4, 0.55), (0.6, 0.7), (1.0, 0.7)]
B = [(0.2, 0.4), (0.5, 0.6), (1.0, 0.55)]


def test_both_aiqs_of_a_small_curve_worked_by_hand():
    table = aiq_table(curves({"a": A, "b": B}), PRICES, POOLS).set_index("router")
    # the paper's formula: over the pool's price range [0.2, 1.0], divided by its width 0.8
    assert table.loc["a", "aiq"] == pytest.approx(0.52 / 0.8)
    assert table.loc["b", "aiq"] == pytest.approx(0.45 / 0.8)
    # RouterBench's code: over [0, X] divided by X; X = 1.0, where a last reaches its best accuracy 0.7
    assert table.loc["a", "aiq_routerbench_code"] == pytest.approx(0.52)
    assert table.loc["b", "aiq_routerbench_code"] == pytest.approx(0.45)
    assert list(table.columns) == ["pool", "aiq", "aiq_routerbench_code"]


def test_routerbench_code_range_depends_on_the_routers_compared():
    # b alone: X = 0.5, its best point; area over [0.2, 0.5] = 0.15, over [0, 0.5] divided by 0.5
    assert routerbench_code_range(curves({"b": B})) == 0.5
    assert aiq_table(curves({"b": B}), PRICES, POOLS)["aiq_routerbench_code"].item() == pytest.approx(0.3)
    assert routerbench_code_range(curves({"a": A, "b": B})) == 1.0


def test_a_pool_without_a_commonly_measured_question_is_skipped_with_a_warning():
    nan = float("nan")
    outcomes = pd.DataFrame({"cheap": [1, 0, 1, 0], "mid": [1, 1, nan, nan], "dear": [nan, nan, 1, 1]}, dtype=float)
    proba = outcomes.fillna(0.5)
    pools = {"judged": ["cheap", "mid"], "disjoint": ["mid", "dear"]}
    with pytest.warns(UserWarning, match="pool 'disjoint': none of the 4 questions"):
        curves_ = router_curves({"r": proba}, outcomes, PRICES, pools, n_budgets=3)
    assert set(curves_["pool"]) == {"judged"}
    assert set(aiq_table(curves_, PRICES, pools)["pool"]) == {"judged"}
    with pytest.raises(ValueError, match="no pool of \\['disjoint'\\]"), pytest.warns(UserWarning):
        router_curves({"r": proba}, outcomes, PRICES, {"disjoint": ["mid", "dear"]}, n_budgets=3)


def test_the_zero_router_mixes_the_two_hull_experts_around_the_budget():
    # cheap 0.5 at 1, mid 0.6 at 2 (under the hull: never mixed), dear 0.9 at 4
    outcomes = pd.DataFrame({"cheap": [1, 0] * 5, "mid": [1] * 6 + [0] * 4, "dear": [1] * 9 + [0]}, dtype=float)
    costs = pd.Series({"cheap": 1.0, "mid": 2.0, "dear": 4.0})
    expected, mix = zero_router(outcomes, costs, 2.0)
    assert mix == pytest.approx({"cheap": 2 / 3, "dear": 1 / 3})
    assert expected.mean() == pytest.approx(0.5 * 2 / 3 + 0.9 / 3)  # above the mid expert's 0.6 at its price
    assert zero_router(outcomes, costs, 9.0)[1] == {"dear": 1.0}
    assert zero_router(outcomes, costs, 1.0)[1] == {"cheap": 1.0}
    assert zero_router(outcomes, costs, 0.9999999999999998)[1] == {"cheap": 1.0}  # a mean of prices, rounded
    assert zero_router(outcomes, costs, 3.9999999999999996)[1] == {"dear": 1.0}
    with pytest.raises(ValueError, match="below the cheapest expert, cheap"):
        zero_router(outcomes, costs, 0.5)
