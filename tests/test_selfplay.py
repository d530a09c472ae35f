import hashlib

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.config import PoolUniverse, SelfPlayTraining, load_profile
from leeroo_lib.data.splits import make_splits, split_index
from leeroo_lib.evaluation.selfplay_study import curve_goals
from leeroo_lib.experts.catalog import expert_costs, load_experts
from leeroo_lib.experts.scoring import select_questions
from leeroo_lib.routing.policies.baselines import SubjectPolicy
from leeroo_lib.routing.policies.embedding import LogisticProbePolicy
from leeroo_lib.routing.selfplay import (
    FULL,
    GREEDY,
    STRATEGIES,
    UNIFORM,
    QuestionPoolGenerator,
    ReplayEvaluator,
    SelfPlayLoop,
    choose_experts,
    parse_generation,
    signal,
    training_loop,
)


class HashEmbedder:
    """A stand-in for the sentence encoder: a fixed random vector per question text."""

    def embed(self, questions):
        seeds = [int(hashlib.sha1(k.encode()).hexdigest()[:8], 16) for k in questions["qkey"]]
        return np.stack([np.random.default_rng(s).normal(size=16) for s in seeds])


@pytest.fixture(scope="module")
def setting(questions, recorded):
    experts = [e.name for e in load_experts()]
    scores = recorded[experts]
    splits = make_splits(scores, test_fraction=0.4, seed=0)
    pool = select_questions(questions, 4, 0, among=split_index(splits, "train"))
    test_keys = split_index(splits, "test")[:120]
    test = questions.set_index(["subject", "idx"]).loc[test_keys].reset_index()
    return {
        "experts": experts,
        "scores": scores,
        "splits": splits,
        "pool": pool,
        "test": test,
        "test_outcomes": scores.loc[test_keys],
    }


def make_loop(setting, strategy=GREEDY, seed=0, pool=None, max_evaluations=None):
    return SelfPlayLoop(
        strategy,
        QuestionPoolGenerator(setting["pool"] if pool is None else pool, seed=seed),
        ReplayEvaluator(setting["scores"], setting["splits"]),
        setting["experts"],
        lambda s: LogisticProbePolicy(HashEmbedder(), seed=s),
        setting["test"],
        setting["test_outcomes"],
        expert_costs(load_experts()),
        budget=5.0,
        epsilon=0.2,
        first_round_evaluations=40,
        max_evaluations=max_evaluations,
        seed=seed,
    )


def test_loop_never_evaluates_a_test_question(setting):
    loops = [make_loop(setting, strategy) for strategy in STRATEGIES]
    for loop in loops:
        loop.run(max_rounds=3)
    evaluated = pd.MultiIndex.from_tuples([k for loop in loops for k in loop.evaluator.evaluated])
    assert len(evaluated) > 100
    assert not evaluated.isin(split_index(setting["splits"], "test")).any()


def test_evaluator_refuses_test_questions(setting):
    evaluator = ReplayEvaluator(setting["scores"], setting["splits"])
    with pytest.raises(ValueError, match="training-split"):
        evaluator.evaluate(setting["test"].head(3), [setting["experts"][:1]] * 3)
    leaky_pool = pd.concat([setting["pool"], setting["test"].head(5)], ignore_index=True)
    with pytest.raises(ValueError, match="training-split"):
        make_loop(setting, FULL, pool=leaky_pool).run()


def test_same_seed_same_curve(setting):
    first = make_loop(setting, seed=3).run(max_rounds=3)
    again = make_loop(setting, seed=3).run(max_rounds=3)
    other = make_loop(setting, seed=4).run(max_rounds=3)
    pd.testing.assert_frame_equal(first, again)
    assert not first[["questions", "evaluations"]].equals(other[["questions", "evaluations"]])


def test_round_spends_its_evaluation_budget(setting):
    loop = make_loop(setting)
    row = loop.run_round()
    assert 30 <= row["evaluations"] <= 40
    assert len(loop.log) == row["questions"]


def test_the_training_loop_keeps_only_what_it_paid_for(setting, questions):
    """The self-play training set: every sampled training question asked, the rest of the matrix NaN, far fewer
    evaluations than full information, no test question, no test accuracy."""
    settings = load_profile("smoke").selfplay
    loop = training_loop(
        questions,
        setting["scores"],
        setting["splits"],
        setting["experts"],
        expert_costs(load_experts()),
        lambda s: LogisticProbePolicy(HashEmbedder(), seed=s),
        settings,
        SelfPlayTraining(budget=5.0, questions=150),
        max_evaluations=None,
        seed=0,
    )
    curve = loop.run()
    gathered = loop.gathered
    assert len(gathered) == 150 and not gathered.index.isin(split_index(setting["splits"], "test")).any()
    assert curve["accuracy"].isna().all()
    asked = gathered.notna().sum(axis=1)
    assert (asked >= 1).all() and loop.evaluations == asked.sum()
    full = setting["scores"].loc[gathered.index]
    assert loop.evaluations < 0.4 * full.notna().sum().sum()
    # every outcome kept is the recorded one
    pd.testing.assert_frame_equal(gathered, full.where(gathered.notna()), check_dtype=False)


def test_epsilon_greedy_sends_to_the_orchestrators_pick():
    available = pd.DataFrame([[True, True, True], [True, False, True]], columns=["a", "b", "c"])
    top = pd.Series(["b", "b"])
    chosen = choose_experts(GREEDY, top, available, 0.0, np.random.default_rng(0))
    assert chosen[0] == ["b"]
    assert chosen[1] in (["a"], ["c"])  # b has no recorded outcome there: a random recorded expert
    assert choose_experts(FULL, top, available, 0.0, np.random.default_rng(0)) == [["a", "b", "c"], ["a", "c"]]
    explored = choose_experts(GREEDY, top, available, 1.0, np.random.default_rng(0))
    assert explored == [["a", "b", "c"], ["a", "c"]]


def test_signal_marks_agreement():
    outcomes = pd.DataFrame({"a": [1, 1, 0, 1], "b": [1, 0, 0, np.nan]})
    assert signal(outcomes).tolist() == ["all_right", "split", "all_wrong", "single"]


def test_budgeted_loop_stops_at_its_evaluations(setting):
    """The loop stops once what is left cannot pay for one question asked of every expert, round by round."""
    for strategy in STRATEGIES:
        loop = make_loop(setting, strategy, max_evaluations=150)
        curve = loop.run()
        assert 150 - len(setting["experts"]) < loop.evaluations <= 150 + len(setting["experts"])
        assert curve["evaluations"].is_monotonic_increasing and curve["evaluations"].iloc[-1] == loop.evaluations
        assert loop.generator.remaining > 0  # the budget, not the pool, ended it


def test_selection_prefers_questions_the_experts_split_on(setting):
    """epsilon-greedy-selection draws questions with weight sd_j(p_ij): a subject where the experts are predicted
    to differ comes up far more often than one where they are predicted alike."""
    pool = setting["pool"]
    subjects = pool["subject"].unique()[:2]

    class Split:
        experts_ = ["a", "b"]

        def predict_proba(self, questions):
            split = questions["subject"].eq(subjects[0]).to_numpy()
            return pd.DataFrame({"a": np.where(split, 0.9, 0.5), "b": np.where(split, 0.1, 0.5)}, index=questions.index)

    two = pool[pool["subject"].isin(subjects)]
    picked = QuestionPoolGenerator(two, select=True, seed=0).propose(4, Split())
    assert (picked["subject"] == subjects[0]).all()
    random_order = QuestionPoolGenerator(two, select=False, seed=0).propose(4, Split())
    assert set(random_order["subject"]) == set(subjects)


def test_new_expert_is_decided_on_the_loops_own_evaluations(setting):
    """An expert joins mid-loop: the universe is recomputed under a rule that can refuse (k=1) from the loop's
    own evaluations, with at most the allowed evaluations of it; every evaluation is counted, and the policy
    predicts the new expert afterwards."""
    experts = setting["experts"]
    new = "openai/gpt-4-1106-preview"
    loop = SelfPlayLoop(
        GREEDY,
        QuestionPoolGenerator(setting["pool"], seed=0),
        ReplayEvaluator(setting["scores"], setting["splits"]),
        [e for e in experts if e != new],
        lambda s: SubjectPolicy(seed=s),
        setting["test"],
        setting["test_outcomes"],
        expert_costs(load_experts()),
        budget=5.0,
        first_round_evaluations=40,
        low_signal_weight=1.0,
    )
    loop.run(max_rounds=3)
    before = loop.evaluations
    joined = loop.add_expert(new, PoolUniverse(rule="greedy", k=1), step=20, patience=3, max_new_evaluations=100)
    assert (joined["loop_decision"] == "serve") == (new in joined["universe_with"])
    assert new not in joined["universe_without"] and len(joined["universe_with"]) == 1
    assert 0 < joined["new_expert_evaluations"] <= 100
    assert loop.evaluations == before + joined["new_expert_evaluations"] + joined["other_evaluations"]
    assert new in loop.policy.experts_ and 0 <= joined["accuracy_before"] <= 1
    with pytest.raises(ValueError, match="already in the loop"):
        loop.add_expert(new, PoolUniverse(rule="greedy", k=1), step=20, patience=3, max_new_evaluations=100)


def test_curve_goals_share_full_informations_gain():
    curve = pd.DataFrame(
        {
            "benchmark": "b",
            "pool": "p",
            "budget": 0.6,
            "strategy": [UNIFORM] * 4,
            "seed": [0, 0, 1, 1],
            "round": [1, 2, 1, 2],
            "evaluations": [10, 20, 10, 20],
            "accuracy": [0.5, 0.6, 0.5, 0.7],
        }
    )
    lines = {
        "p": {"best_single_expert": ("x", 0.5), "full_information_accuracy": 0.7, "full_information_evaluations": 200}
    }
    row = curve_goals(curve, lines).iloc[0]
    assert row["evaluations_share"] == pytest.approx(0.1)
    assert row["gain_share"] == pytest.approx(0.75) and row["gain_share_low"] < 0.75 < row["gain_share_high"]
    assert row["first_round_accuracy"] == pytest.approx(0.5) and row["n_seeds"] == 2
    no_gain = {"p": {**lines["p"], "full_information_accuracy": 0.45}}
    assert np.isnan(curve_goals(curve, no_gain).iloc[0]["gain_share"])


VALID = "Question: What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer: B"


def test_valid_generation_is_parsed():
    parsed = parse_generation("Sure! " + VALID + "\nIt is B because ...")
    assert parsed["valid"], parsed["reason"]
    assert parsed["question"] == "What is 2 + 2?"
    assert parsed["choices"] == ["3", "4", "5", "22"]
    assert parsed["answer"] == 1


@pytest.mark.parametrize(
    "text, reason",
    [
        ("The answer is four.", "no 'Question:'"),
        ("Question: What is 2 + 2?\nA. 3\nB. 4\nC. 5\nAnswer: B", "missing option(s) D"),
        ("Question: What is 2 + 2?\nA. 4\nB. 4\nC. 5\nD. 22\nAnswer: B", "not four distinct"),
        ("Question: What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 22\nThe answer is four.", "no 'Answer:'"),
    ],
)
def test_malformed_generation_is_rejected_with_a_reason(text, reason):
    parsed = parse_generation(text)
    assert not parsed["valid"]
    assert reason in parsed["reason"]


def test_copied_example_is_rejected():
    assert parse_generation(VALID, example=VALID)["reason"] == "copies the example question"
