import hashlib

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.config import SelfPlayTraining, load_profile
from leeroo_lib.data.splits import make_splits, split_index
from leeroo_lib.experts.catalog import expert_costs, load_experts
from leeroo_lib.experts.scoring import select_questions
from leeroo_lib.routing.policies.embedding import LogisticProbePolicy
from leeroo_lib.routing.selfplay import (
    PoolGenerator,
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


def make_loop(setting, strategy="epsilon_greedy", seed=0, pool=None):
    return SelfPlayLoop(
        strategy,
        PoolGenerator(setting["pool"] if pool is None else pool, seed=seed),
        ReplayEvaluator(setting["scores"], setting["splits"]),
        setting["experts"],
        lambda s: LogisticProbePolicy(HashEmbedder(), seed=s),
        setting["test"],
        setting["test_outcomes"],
        expert_costs(load_experts()),
        budget=5.0,
        epsilon=0.2,
        first_round_evaluations=40,
        seed=seed,
    )


def test_loop_never_evaluates_a_test_question(setting):
    loops = [make_loop(setting, strategy) for strategy in ("epsilon_greedy", "uniform", "full")]
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
        make_loop(setting, "full", pool=leaky_pool).run()


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
    chosen = choose_experts("epsilon_greedy", top, available, 0.0, np.random.default_rng(0))
    assert chosen[0] == ["b"]
    assert chosen[1] in (["a"], ["c"])  # b has no recorded outcome there: a random recorded expert
    assert choose_experts("full", top, available, 0.0, np.random.default_rng(0)) == [["a", "b", "c"], ["a", "c"]]
    explored = choose_experts("epsilon_greedy", top, available, 1.0, np.random.default_rng(0))
    assert explored == [["a", "b", "c"], ["a", "c"]]


def test_signal_marks_agreement():
    outcomes = pd.DataFrame({"a": [1, 1, 0, 1], "b": [1, 0, 0, np.nan]})
    assert signal(outcomes).tolist() == ["all_right", "split", "all_wrong", "single"]


def test_adding_an_expert_recomputes_the_universe(setting):
    served = [e for e in setting["experts"] if e != "openai/gpt-4-1106-preview"]
    loop = make_loop(setting)
    loop.experts = served
    loop.gathered = loop.gathered[served]
    loop.run(max_rounds=2)
    universe = loop.add_expert("openai/gpt-4-1106-preview", 20)
    assert "openai/gpt-4-1106-preview" in [e for e, _ in universe]
    assert not loop.gathered.loc[loop.integration_sample].isna().any().any()
    assert "openai/gpt-4-1106-preview" in loop.policy.experts_


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
