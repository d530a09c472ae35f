import numpy as np
import pandas as pd
import pytest

from leeroo_lib.data.benchmarks import gold_letters
from leeroo_lib.data.splits import make_splits, split_index
from leeroo_lib.data.suites import load_letter_scores, load_letters
from leeroo_lib.evaluation.strategies import (
    GOAL_COLUMNS,
    STRATEGY_COLUMNS,
    AgreementCascade,
    LearnedCascade,
    MajorityVote,
    cheaper_win,
    evaluate_strategies,
    strategy_aiq,
)
from leeroo_lib.experts.catalog import expert_costs, load_experts
from leeroo_lib.routing.policies.baselines import SubjectPolicy

OPUS = "anthropic/claude-3-opus-20240229 (HELM)"
GPT4O = "openai/gpt-4o-2024-05-13 (HELM)"
N_TRAIN = 4000  # a seeded share of the training rows keeps the cascade's fit to a couple of seconds


@pytest.fixture(scope="module")
def helm(questions, recorded):
    """Letters, gold, prices and the fixed split restricted to the HELM rows."""
    letters = load_letters("helm", questions)
    test = split_index(make_splits(recorded, 0.4, 0), "test")
    test = test[test.isin(letters.index)]
    train = letters.index[~letters.index.isin(test)]
    return {
        "letters": letters,
        "gold": gold_letters(questions),
        "test": test,
        "train": train,
        "prices": expert_costs(load_experts(suite="helm")),
        "scores": load_letter_scores("helm", questions),
    }


@pytest.fixture(scope="module")
def cheap(helm):
    return helm["prices"].nsmallest(3).index.tolist()


@pytest.fixture(scope="module")
def cascade(questions, helm):
    keyed = questions.set_index(["subject", "idx"])
    policy = SubjectPolicy().fit(keyed.loc[helm["train"]].reset_index(), helm["scores"])
    proba = policy.predict_proba(questions).set_axis(pd.MultiIndex.from_frame(questions[["subject", "idx"]]))
    train = helm["train"][np.sort(np.random.default_rng(0).permutation(len(helm["train"]))[:N_TRAIN])]
    return LearnedCascade(proba, helm["prices"], seed=0).fit(helm["letters"].loc[train], helm["gold"])


def _strategies(helm, cheap, cascade):
    return [
        MajorityVote(cheap, helm["prices"]),
        AgreementCascade(cheap, GPT4O, 3, helm["prices"]),
        AgreementCascade(cheap[:2], OPUS, 2, helm["prices"]),
        cascade.at_budget(6.0),
    ]


def test_majority_of_three_cheapest_beats_each_of_them(helm, cheap):
    letters, gold = helm["letters"], helm["gold"]
    answers = MajorityVote(cheap, helm["prices"]).answer(letters)
    assert (answers["cost"] == helm["prices"][cheap].sum()).all()
    given = letters[cheap].eq(answers["letter"], axis=0).any(axis=1) | letters[cheap].isna().all(axis=1)
    assert given.all()  # the answer is always a letter some voter gave
    accuracy = (answers["letter"] == gold.reindex(letters.index)).mean()
    assert accuracy > helm["scores"][cheap].mean().max() + 0.01


def test_majority_tie_goes_to_the_first_listed(helm, cheap):
    letters = helm["letters"]
    answers = MajorityVote(cheap[:2], helm["prices"]).answer(letters)
    first = letters[cheap[0]].notna()
    assert (answers["letter"][first] == letters[cheap[0]][first]).all()
    assert (answers["letter"][~first] == letters[cheap[1]][~first]).all()


def test_agreement_cascade_accepts_agreement_else_asks_strong(helm, cheap):
    letters = helm["letters"].loc[helm["test"]]
    answers = AgreementCascade(cheap, GPT4O, 3, helm["prices"]).answer(letters)
    escalated = answers["experts"].map(lambda called: called[-1] == GPT4O)
    unanimous = letters[cheap].nunique(axis=1).eq(1) & letters[cheap].notna().all(axis=1)
    assert (escalated == ~unanimous).all()
    assert (answers["letter"][unanimous] == letters[cheap[0]][unanimous]).all()
    assert (answers["letter"][escalated] == letters[GPT4O][escalated]).all()
    # the second cheap expert's dissent already makes 3 of 3 impossible: the third is not asked
    early = letters[cheap[:2]].notna().all(axis=1) & (letters[cheap[0]] != letters[cheap[1]])
    assert early.any() and answers["experts"][early].map(lambda c: c == (cheap[0], cheap[1], GPT4O)).all()


def test_every_strategy_pays_for_exactly_the_experts_it_called(helm, cheap, cascade):
    letters, price = helm["letters"].loc[helm["test"]], helm["prices"].to_dict()
    for strategy in _strategies(helm, cheap, cascade):
        answers = strategy.answer(letters)
        paid = answers["experts"].map(lambda called: sum(price[e] for e in called))
        assert np.allclose(answers["cost"], paid), strategy.name
        assert answers["experts"].map(lambda called: len(set(called)) == len(called)).all()


def test_decisions_never_read_letters_not_paid_for(helm, cheap, cascade):
    """Rotating the letters of every expert a question did not call changes nothing."""
    letters = helm["letters"].loc[helm["test"]]
    rotate = dict(zip("ABCD", "BCDA"))
    for strategy in _strategies(helm, cheap, cascade):
        answers = strategy.answer(letters)
        called = pd.DataFrame(
            [[e in c for e in letters.columns] for c in answers["experts"]],
            index=letters.index,
            columns=letters.columns,
        )
        unseen = letters.where(called, letters.apply(lambda col: col.map(rotate)))
        assert not unseen.equals(letters)
        again = strategy.answer(unseen)
        assert again.equals(answers), strategy.name


def test_learned_cascade_budgets(helm, cascade):
    letters, gold = helm["letters"].loc[helm["test"]], helm["gold"]
    cheapest = helm["prices"].idxmin()
    alone = cascade.at_budget(helm["prices"].min()).answer(letters)
    assert (alone["experts"] == (cheapest,)).all()
    assert (alone["letter"].fillna("-") == letters[cheapest].fillna("-")).all()
    for budget in (3.0, 10.0):
        chosen = cascade.at_budget(budget)
        setting = cascade.settings_.query("cap == @chosen.cap and threshold == @chosen.threshold").iloc[0]
        assert setting["cost"] <= budget
        assert (chosen.training_cost, chosen.training_accuracy) == (setting["cost"], setting["accuracy"])
        answers = chosen.answer(letters)
        assert answers["cost"].mean() == pytest.approx(budget, rel=0.25)
        price = helm["prices"].to_dict()
        assert answers["experts"].map(lambda called: list(called) == sorted(called, key=price.get)).all()
    accuracy = (cascade.at_budget(10.0).answer(letters)["letter"] == gold.reindex(letters.index)).mean()
    assert accuracy > helm["scores"].loc[helm["test"], cheapest].mean() + 0.03


def test_learned_cascade_is_seeded(helm, cascade):
    rows = helm["train"][::10]
    fits = [
        LearnedCascade(cascade.proba, helm["prices"], seed=seed).fit(helm["letters"].loc[rows], helm["gold"])
        for seed in (0, 0, 1)
    ]
    assert fits[0].settings_.equals(fits[1].settings_)
    assert not fits[0].settings_.equals(fits[2].settings_)  # the seed draws the folds


def test_learned_cascade_errors_name_the_fix(helm, cascade):
    with pytest.raises(ValueError, match="below the cheapest setting's training cost"):
        cascade.at_budget(0.5)
    with pytest.raises(ValueError, match="not fitted"):
        LearnedCascade(cascade.proba, helm["prices"]).at_budget(5.0)
    lacking = LearnedCascade(cascade.proba.drop(helm["test"][:1]), helm["prices"])
    with pytest.raises(ValueError, match=r"predictions lack 1 questions .*index predict_proba's frame"):
        lacking.fit(helm["letters"].loc[helm["test"]], helm["gold"])
    with pytest.raises(ValueError, match="quorum 4 must lie between 1 and"):
        AgreementCascade(["a", "b", "c"], OPUS, 4, helm["prices"])
    with pytest.raises(ValueError, match=r"no price given for expert\(s\) \['nobody'\]"):
        MajorityVote(["nobody"], helm["prices"])


def test_evaluation_rows_aiq_and_goal(helm, cheap, cascade):
    letters, gold = helm["letters"].loc[helm["test"]], helm["gold"]
    strategies = _strategies(helm, cheap, cascade)
    rows = evaluate_strategies(strategies, letters, gold, "frontier", seed=0)
    assert list(rows.columns) == STRATEGY_COLUMNS and len(rows) == len(strategies)
    assert ((rows["ci_low"] <= rows["accuracy"]) & (rows["accuracy"] <= rows["ci_high"])).all()
    assert rows["calls_per_question"].between(1, len(letters.columns)).all()
    assert rows.loc[rows["strategy"] == "learned cascade", "budget"].tolist() == [6.0]
    table = strategy_aiq(rows, helm["prices"])
    assert set(table["strategy"]) == {"majority vote", "agreement cascade", "learned cascade"}
    assert table["aiq"].between(0.5, 0.9).all()
    train = helm["letters"].loc[helm["train"]]
    goals = cheaper_win(strategies, train, letters, gold, helm["prices"], OPUS, seed=0, price_shares=[0.25, 0.5, 0.01])
    assert list(goals.columns) == GOAL_COLUMNS and goals["price_share"].tolist() == [0.25, 0.5, 0.01]
    assert goals["cost_limit"].tolist() == [45.0 / 4, 45.0 / 2, 0.45]
    assert goals["reference_accuracy"].eq(helm["scores"].loc[helm["test"], OPUS].mean()).all()
    on_training = {
        s.name: s.training_accuracy
        if s.name == "learned cascade"
        else (s.answer(train)["letter"] == gold[train.index]).mean()
        for s in strategies
    }
    for goal in goals.iloc[:2].to_dict("records"):
        assert (
            goal["training_cost"] <= goal["cost_limit"] and goal["training_accuracy"] == on_training[goal["strategy"]]
        )
        assert goal["difference"] == pytest.approx(goal["accuracy"] - goal["reference_accuracy"])
        assert goal["diff_ci_low"] <= goal["difference"] <= goal["diff_ci_high"]
        assert goal["met"] == (goal["difference"] >= 0.01)
    assert pd.isna(goals["strategy"].iloc[2]) and not goals["met"].iloc[2]  # nothing costs 0.45 or less


def test_the_goal_is_chosen_on_the_training_split_and_reported_on_the_test_split():
    # expert a is right on the training rows and wrong on the test rows, b the other way round
    train = pd.DataFrame({"a": list("AA"), "b": list("BB"), "ref": list("AB")}, index=["t0", "t1"])
    test = pd.DataFrame({"a": list("BB"), "b": list("AA"), "ref": list("AA")}, index=["s0", "s1"])
    gold = pd.Series("A", index=[*train.index, *test.index])
    prices = pd.Series({"a": 1.0, "b": 1.0, "ref": 10.0})
    strategies = [MajorityVote(["b"], prices), MajorityVote(["a"], prices)]
    goal = cheaper_win(strategies, train, test, gold, prices, "ref", seed=0).iloc[0]
    assert goal["strategy"] == "majority vote: a" and goal["training_accuracy"] == 1.0
    assert (goal["accuracy"], goal["reference_accuracy"], goal["difference"]) == (0.0, 1.0, -1.0)
