import numpy as np
import pandas as pd
import pytest

from leeroo_lib.data.suites import paper_rows
from leeroo_lib.evaluation import evaluate
from leeroo_lib.experts.catalog import Expert, load_experts

CHEAP = Expert("cheap", 7.0, "7B", 0.2, "open", "lm-eval 5-shot loglikelihood", "t")
MID = Expert("mid", 13.0, "13B", 0.5, "open", "lm-eval 5-shot loglikelihood", "t")
BIG = Expert("big", None, "GPT4", 20.0, "closed", "generative 5-shot (answer letter parsed)", "t")
CATALOG = [CHEAP, MID, BIG]


@pytest.fixture
def toy():
    questions = pd.DataFrame(
        {"subject": ["a", "a", "b", "b"], "idx": [0, 1, 0, 1], "subcategory": ["math", "math", "law", "law"]}
    )
    scores = pd.DataFrame(
        {"cheap": [1, 0, 0, 1], "mid": [0, 1, 1, 0], "big": [1, 1, 1, 0]},
        index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]),
    ).astype(float)
    return questions, scores


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = np.random.default_rng(0).integers(0, 2, 500)
    assert evaluate.bootstrap_ci(x, seed=3) == evaluate.bootstrap_ci(x, seed=3)
    low, high = evaluate.bootstrap_ci(x, seed=3)
    assert low < x.mean() < high and high - low < 0.1


def test_routed_outcomes_reads_the_chosen_expert(toy):
    questions, scores = toy
    routes = pd.Series(["cheap", "mid", "mid", "cheap"], index=questions.index)
    assert evaluate.routed_outcomes(routes, questions, scores).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="no column"):
        evaluate.routed_outcomes(pd.Series(["gpt-9"] * 4, index=questions.index), questions, scores)


def test_router_row_compares_with_best_single_it_can_afford(toy):
    questions, scores = toy
    routes = pd.Series(["cheap", "mid", "mid", "cheap"], index=questions.index)
    row = evaluate.router_row("r", "open", 0.4, routes, questions, scores, CATALOG, seed=0, allocation="global")
    assert row["allocation"] == "global" and row["cost_per_1m_usd"] == pytest.approx(0.35)
    assert row["best_single_at_cost"] == "cheap"  # mid (0.5) and big cost more than 0.35
    assert row["accuracy"] == 1.0 and row["diff_vs_best_single"] == pytest.approx(0.5)
    assert row["note"] == ""
    # the zero router at 0.35 mixes cheap (0.5 at 0.2) with big (0.75 at 20); mid lies under that line
    big_share = (0.35 - 0.2) / (20 - 0.2)
    assert row["zero_router_mix"] == f"cheap {1 - big_share:.0%}; big {big_share:.0%}"
    assert row["diff_vs_zero_router"] == pytest.approx(1 - (0.5 + 0.25 * big_share))
    # the same routes under a budget of 0.5 are compared with mid too (priced at the budget)
    better_mid = scores.assign(mid=[1.0, 1.0, 1.0, 1.0])
    row = evaluate.router_row("r", "open", 0.5, routes, questions, better_mid, CATALOG, seed=0, allocation="global")
    assert row["best_single_at_cost"] == "mid" and row["diff_vs_best_single"] == pytest.approx(0.0)


def test_selfplay_against_full_is_a_paired_difference(toy):
    questions, scores = toy
    judged, served = {"p": questions}, {"p": ["cheap", "mid"]}
    routes = {
        "selfplay": {("p", 0.3): pd.Series(["cheap", "cheap", "cheap", "cheap"])},  # right on 2 of 4
        "full": {("p", 0.3): pd.Series(["cheap", "mid", "mid", "cheap"])},  # right on all 4
    }
    row = evaluate.selfplay_against_full(routes, judged, scores, served, seed=0).iloc[0]
    assert (row["accuracy_selfplay"], row["accuracy_full"]) == (0.5, 1.0)
    assert row["selfplay_minus_full"] == pytest.approx(-50) and row["ci_low"] <= -50 <= row["ci_high"] <= 0
    assert row["n_questions"] == 4


def test_protocol_note_only_when_protocols_mix():
    assert evaluate.protocol_note([CHEAP, MID]) == ""
    assert "big generative" in evaluate.protocol_note([CHEAP, BIG])
    real = load_experts()
    assert "Mixtral" in evaluate.protocol_note(real)


def test_distribution_shares_sum_to_one(toy):
    questions, _ = toy
    routes = {("open", 0.4): pd.Series(["cheap", "mid", "mid", "cheap"]), ("mix", 5): pd.Series(["big"] * 4)}
    dist = evaluate.routing_distribution(routes, CATALOG)
    sums = dist.groupby(["pool", "budget"])["share"].sum()
    assert np.allclose(sums, 1.0)
    assert dist.query("pool == 'mix' and size_class == 'GPT4'")["share"].item() == 1.0


def test_subcategory_accuracy(toy):
    questions, _ = toy
    out = evaluate.subcategory_accuracy({"s": np.array([1, 0, 1, 1])}, questions, seed=0)
    assert out.loc["math", "s"] == 0.5 and out.loc["law", "s"] == 1.0
    assert out["n_questions"].tolist() == [2, 2]
    # law: both right, so no interval; math: one of two, so the bootstrap spans 0 to 1
    assert out.loc["law", ["s_ci_low", "s_ci_high"]].tolist() == [1.0, 1.0]
    assert out.loc["math", ["s_ci_low", "s_ci_high"]].tolist() == [0.0, 1.0]


def test_table1_is_identical_for_the_same_seed(toy):
    questions, scores = toy
    routes = pd.Series(["cheap", "big", "mid", "cheap"], index=questions.index)

    def build():
        return evaluate.table1(
            [
                evaluate.single_expert_rows(scores, CATALOG, seed=0),
                paper_rows(),
                evaluate.oracle_row(scores, CATALOG, "mix", seed=0),
                evaluate.router_row("r", "mix", 6.0, routes, questions, scores, CATALOG, 0, "sequential"),
            ]
        )

    a, b = build(), build()
    assert a.to_csv(index=False) == b.to_csv(index=False)
    assert list(a.columns) == evaluate.TABLE1_COLUMNS
    assert set(a["source"]) == {"paper", "this repo"}
    assert a["allocation"].dropna().tolist() == ["sequential"]  # the router's row, and only it
    assert (a.loc[a["source"] == "paper", "accuracy"] <= 1).all()


def test_test_questions_limit_is_a_seeded_sample(questions, recorded):
    from leeroo_lib.data.splits import make_splits

    splits = make_splits(recorded, 0.4, seed=0)
    full = evaluate.test_questions(questions, splits)
    assert len(full) == (splits["split"] == "test").sum()
    a = evaluate.test_questions(questions, splits, limit=50, seed=1)
    assert len(a) == 50 and a.equals(evaluate.test_questions(questions, splits, limit=50, seed=1))


def test_coverage_counts_the_questions_every_served_expert_answered(toy):
    questions, scores = toy
    scores.loc[("a", 1), "big"] = np.nan  # big was not asked one math question
    table = evaluate.coverage({"all": questions, "small": questions}, scores, {"all": list(scores), "small": ["cheap"]})
    rows = table.set_index(["pool", "subcategory"])
    assert rows.loc[("all", "math"), ["test_questions", "judged", "share"]].tolist() == [2, 1, 0.5]
    assert rows.loc[("all", "law"), "share"] == 1.0 and rows.loc[("all", "all"), "judged"] == 3
    assert (rows.loc["small", "share"] == 1.0).all()
