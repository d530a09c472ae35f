"""MMLU-Pro as a second benchmark: its questions, its letter suite, and a ten-option question routed
end to end (a hard-coded "ABCD" anywhere on the way would drop options E-J)."""

import numpy as np
import pandas as pd
import pytest
import yaml

from leeroo_lib.config import CONFIG_DIR, Pool, Profile, load_profile
from leeroo_lib.data.benchmarks import LETTERS, load_questions, question_texts
from leeroo_lib.data.splits import make_splits
from leeroo_lib.data.suites import (
    load_letter_scores,
    load_letters,
    load_output_chars,
    load_recorded_scores,
    split_basis,
)
from leeroo_lib.evaluation.evaluate import routing_distribution
from leeroo_lib.evaluation.goal import goal_evaluation
from leeroo_lib.experts.catalog import expert_costs, load_catalog, load_experts
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies.baselines import SubjectPolicy
from leeroo_lib.routing.pools import pool_members
from leeroo_lib.routing.universe import chance_oracle

LLAMA2_7B = "meta-llama/Llama-2-7b-hf (MMLU-Pro)"
DEEPSEEK = "deepseek-ai/DeepSeek-Coder-V2-Instruct (MMLU-Pro)"
# PROVENANCE.md: accuracy over every measured row, this folder's 10,786 among them
PROVENANCE_ACCURACY = {LLAMA2_7B: 0.183, "google/gemini-1.5-pro-002 (MMLU-Pro)": 0.703}


@pytest.fixture(scope="module")
def pro():
    return load_questions("mmlu_pro")


@pytest.fixture(scope="module")
def pro_scores(pro):
    return load_letter_scores("mmlu_pro", pro)


def test_every_question_is_in_the_frame_route_takes(pro):
    assert len(pro) == 11_984 and pro["question_id"].is_unique
    assert not pro.set_index(["subject", "idx"]).index.duplicated().any()
    assert pro["category"].nunique() == 14 and pro["subject"].str.startswith("ori_mmlu-").any()
    assert pro["choices"].map(len).between(3, 10).all() and (pro["choices"].map(len) == 10).sum() == 9_947
    assert (pro["answer"] < pro["choices"].map(len)).all()


def test_an_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(
        ValueError, match=r"unknown benchmark\(s\) \['mmlu-pro'\]: use one or more of \['mmlu', 'mmlu_pro'\]"
    ):
        load_questions("mmlu-pro")


def test_letters_no_letter_and_not_measured_are_three_things(pro, pro_scores):
    letters = load_letters("mmlu_pro", pro)
    assert pro_scores.shape == letters.shape == (10_786, 29)
    assert set(letters.stack().dropna()) <= set(LETTERS) and "J" in set(letters.stack())
    # '?' (answered, no letter) counts wrong; an empty cell is not measured and stays empty, never filled
    no_letter = letters[LLAMA2_7B].isna() & pro_scores[LLAMA2_7B].notna()
    assert no_letter.sum() == 1_855 and (pro_scores.loc[no_letter, LLAMA2_7B] == 0).all()
    category = pro.set_index(["subject", "idx"])["category"].reindex(pro_scores.index)
    coverage = pro_scores[DEEPSEEK].notna().groupby(category).mean()
    assert coverage["engineering"] < 0.2 and coverage["chemistry"] < 0.35 and coverage["law"] == 1.0
    for expert, accuracy in PROVENANCE_ACCURACY.items():
        assert pro_scores[expert].mean() == pytest.approx(accuracy, abs=0.003), expert
    assert load_output_chars(pro).columns.equals(pro_scores.columns)


def test_the_suite_is_priced_from_its_input_and_output_prices():
    experts = load_experts(suite="mmlu_pro")
    assert len(experts) == 29 and sum(e.access == "open" for e in experts) == 27
    assert all(e.cost_per_1m_usd == pytest.approx((e.input_usd_per_1m + e.output_usd_per_1m) / 2) for e in experts)


def test_a_ten_option_question_is_read_whole_and_routed(pro, pro_scores):
    ten = pro[pro["choices"].map(len) == 10].head(1)
    text = question_texts(ten)[0]
    assert "\nJ. " in text and text.count("\n") == 10
    rows = pro.set_index(["subject", "idx"]).loc[pro_scores.index].reset_index()
    experts = [LLAMA2_7B, "google/gemini-1.5-pro-002 (MMLU-Pro)"]
    policy = SubjectPolicy().fit(rows, pro_scores[experts])
    costs = expert_costs(load_experts(suite="mmlu_pro"))[experts]
    orchestrator = Orchestrator(policy, costs, pools={"pro": experts})
    routes = orchestrator.route(rows.head(200), budget=float(costs.max()), pool="pro")
    assert set(routes) == {"google/gemini-1.5-pro-002 (MMLU-Pro)"}  # at its price, the better one everywhere
    assert np.isclose(costs[orchestrator.route(rows.head(200), float(costs.min()), pool="pro")].mean(), costs.min())
    assert isinstance(routes, pd.Series) and routes.index.equals(rows.head(200).index)


def test_both_benchmarks_load_into_one_frame_that_says_which_is_which(pro):
    both = load_questions(["mmlu", "mmlu_pro"])
    assert both["benchmark"].value_counts().to_dict() == {"mmlu": 14_042, "mmlu_pro": 11_984}
    assert not both.set_index(["subject", "idx"]).index.duplicated().any()  # subjects never collide
    columns = ["subject", "idx", "qkey", "answer"]
    assert both.loc[both["benchmark"] == "mmlu_pro", columns].reset_index(drop=True).equals(pro[columns])


def test_the_split_of_mmlu_pro_is_drawn_from_every_question_its_full_experts_answered(pro_scores):
    basis = split_basis("mmlu_pro", pro_scores)
    assert basis.shape == (10_786, 26) and DEEPSEEK not in basis.columns
    splits = make_splits(basis, test_fraction=0.4, seed=0)
    assert (splits["split"] == "test").sum() == 4_315  # 0.4 of 10,786, rounded up as scikit-learn does
    assert make_splits(basis, test_fraction=0.4, seed=0).equals(splits)


def test_a_pool_takes_only_experts_of_its_benchmark():
    catalog = load_catalog(load_profile("cpu"))
    pools = load_profile("cpu").pools
    assert len(pool_members(pools["pro-open"], catalog)) == 27 and len(pool_members(pools["pro-all"], catalog)) == 29
    mixed = Pool(name="mixed", title="mixed", benchmark="mmlu", candidates={"suites": ["recorded", "mmlu_pro"]})
    with pytest.raises(ValueError, match=r"pool 'mixed' routes mmlu questions, but its candidates .*\(mmlu_pro\)"):
        pool_members(mixed, catalog)


def test_a_profile_routing_a_benchmark_it_leaves_out_is_refused():
    smoke = yaml.safe_load((CONFIG_DIR / "smoke.yaml").read_text())
    with pytest.raises(ValueError, match=r"pools \['pro-open \(mmlu_pro\)'\] route a benchmark the profile leaves"):
        Profile.model_validate({**smoke, "benchmarks": ["mmlu"]})


def test_the_fine_tuned_policies_read_only_the_benchmarks_the_profile_gives_them():
    settings = load_profile("cpu").policy
    assert "leeroo-encoder" in settings.compared_on("mmlu")
    assert "leeroo-encoder" not in settings.compared_on("mmlu_pro")
    assert "leeroo-stacked" in settings.compared_on("mmlu_pro")


@pytest.fixture(scope="module")
def two_benchmarks(pro, pro_scores):
    """An orchestrator with a subject policy per benchmark: two MMLU experts, two MMLU-Pro experts."""
    mmlu = load_questions("mmlu")
    recorded = load_recorded_scores()
    mmlu_experts = ["meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf"]
    pro_experts = [LLAMA2_7B, "google/gemini-1.5-pro-002 (MMLU-Pro)"]
    pro_rows = pro.set_index(["subject", "idx"]).loc[pro_scores.index].reset_index()
    policies = [
        SubjectPolicy().fit(
            mmlu[pd.MultiIndex.from_frame(mmlu[["subject", "idx"]]).isin(recorded.index)], recorded[mmlu_experts]
        ),
        SubjectPolicy().fit(pro_rows, pro_scores[pro_experts]),
    ]
    costs = expert_costs(load_catalog())[mmlu_experts + pro_experts]
    pools = {"open": mmlu_experts, "pro": pro_experts}
    return Orchestrator(policies, costs, pools=pools), mmlu.head(30), pro_rows.head(30)


def test_one_orchestrator_routes_each_benchmark_with_its_own_policy(two_benchmarks, tmp_path):
    orchestrator, mmlu, pro_rows = two_benchmarks
    assert set(orchestrator.route(mmlu, 0.9, pool="open")) <= set(orchestrator.pools["open"])
    assert set(orchestrator.route(pro_rows, 3.125, pool="pro")) == {"google/gemini-1.5-pro-002 (MMLU-Pro)"}
    orchestrator.save(tmp_path)
    reloaded = Orchestrator.load(tmp_path)
    assert reloaded.route(pro_rows, 1.0, pool="pro").equals(orchestrator.route(pro_rows, 1.0, pool="pro"))
    assert [type(p).__name__ for p in reloaded.policies] == ["SubjectPolicy", "SubjectPolicy"]


def test_routing_across_benchmarks_names_the_pools_to_use(two_benchmarks):
    orchestrator, mmlu, _ = two_benchmarks
    with pytest.raises(ValueError, match=r"routes 2 benchmarks: name a pool \(one of \['open', 'pro'\]\)"):
        orchestrator.route(mmlu, 0.9)
    with pytest.raises(ValueError, match="belong to policies of different benchmarks"):
        orchestrator.route(mmlu, 0.9, experts=["meta-llama/Llama-2-70b-hf", LLAMA2_7B])
    with pytest.raises(ValueError, match="pool 'both': experts .* belong to policies of different benchmarks"):
        Orchestrator(
            orchestrator.policies, orchestrator.costs, pools={"both": ["meta-llama/Llama-2-70b-hf", LLAMA2_7B]}
        )
    with pytest.raises(AttributeError, match="holds 2 policies: use policy_for"):
        orchestrator.policy  # noqa: B018


def test_the_goal_reference_left_out_is_the_best_expert_the_budget_affords():
    outcomes = pd.DataFrame({"cheap": [1, 0, 1, 1], "mid": [1, 1, 1, 0], "dear": [1, 1, 1, 1]}, dtype=float)
    costs = pd.Series({"cheap": 0.1, "mid": 0.2, "dear": 1.0})
    proba = {"prior": pd.DataFrame(0.5, index=outcomes.index, columns=outcomes.columns)}
    result = goal_evaluation(proba, outcomes, costs, list(costs.index), reference=None, budget=0.2, seed=0)
    assert result.reference_name == "cheap"  # 3 of 4 like mid; the first of equals, in pool order
    assert result.reference.tolist() == [1, 0, 1, 1]


def test_chance_averages_over_each_questions_options():
    assert chance_oracle(1, [4, 10]) == pytest.approx((0.25 + 0.1) / 2)
    assert chance_oracle(np.array([2]), [10])[0] == pytest.approx(1 - 0.9**2)


def test_size_classes_of_a_pool_come_from_its_own_benchmark():
    catalog = load_catalog()
    routes = {("pro", 0.6): pd.Series([LLAMA2_7B, "microsoft/Phi-3-mini-4k-instruct (MMLU-Pro)"])}
    shares = routing_distribution(routes, catalog).set_index("size_class")["share"]
    assert shares["<7B"] == shares["7B"] == 0.5 and "GPT4" not in shares.index
