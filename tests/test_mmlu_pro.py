"""MMLU-Pro as a second benchmark: its questions, its letter suite, and a ten-option question routed
end to end (a hard-coded "ABCD" anywhere on the way would drop options E-J)."""

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.data.benchmarks import LETTERS, load_questions, question_texts
from leeroo_lib.data.suites import load_letter_scores, load_letters, load_output_chars
from leeroo_lib.evaluation.evaluate import usd_per_1000_questions
from leeroo_lib.experts.catalog import expert_costs, load_experts
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies.baselines import SubjectPolicy

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
    with pytest.raises(ValueError, match=r"unknown benchmark 'mmlu-pro': use one of \['mmlu', 'mmlu_pro'\]"):
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


def test_a_question_costs_its_prompt_in_and_its_answer_out(pro, pro_scores):
    rows = pro.set_index(["subject", "idx"]).loc[pro_scores.index[:50]].reset_index()
    chars = load_output_chars(pro)
    catalog = load_experts(suite="mmlu_pro")
    jamba, llama = "ai21labs/AI21-Jamba-1.5-Large (MMLU-Pro)", "meta-llama/Meta-Llama-3-8B (MMLU-Pro)"
    prices = {e.name: e for e in catalog}
    for expert in (jamba, llama):
        routes = pd.Series(expert, index=rows.index)
        prompt = np.mean([len(t) for t in question_texts(rows)]) / 4 * prices[expert].input_usd_per_1m
        answer = chars.loc[pro_scores.index[:50], expert].mean() / 4 * prices[expert].output_usd_per_1m
        assert usd_per_1000_questions(routes, rows, chars, catalog) == pytest.approx((prompt + answer) / 1000)
    with pytest.raises(ValueError, match="no input and output prices"):
        usd_per_1000_questions(pd.Series("openai/gpt-4-1106-preview", index=rows.index), rows, chars, load_experts())
