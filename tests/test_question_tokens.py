"""MMLU-Pro's cost per question in tokens: the question, the estimated 5-shot chain-of-thought prefix of its
category, and the recorded answer converted at the tokenizer's tokens per character."""

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.data.benchmarks import load_questions
from leeroo_lib.data.suites import load_output_chars
from leeroo_lib.evaluation.evaluate import usd_per_1000_questions
from leeroo_lib.evaluation.question_tokens import count_tokens, estimate_tokens, smollm2_tokenizer
from leeroo_lib.experts.catalog import load_experts

JAMBA, LLAMA3_8B = "ai21labs/AI21-Jamba-1.5-Large (MMLU-Pro)", "meta-llama/Meta-Llama-3-8B (MMLU-Pro)"


def words(texts, add_special_tokens, return_attention_mask):
    """A tokenizer of whitespace-separated words, shaped like a transformers one."""
    return {"input_ids": [text.split() for text in texts]}


@pytest.fixture(scope="module")
def pro():
    return load_questions("mmlu_pro")


def test_the_prefix_is_five_shots_of_the_category_means():
    questions = pd.DataFrame(
        {
            "subject": ["s", "s", "t"],
            "idx": [0, 1, 0],
            "question": ["one two", "one two three four", "x"],
            "choices": [["a", "b"], ["a", "b"], ["y z"]],
            "category": ["math", "math", "law"],
        }
    )
    keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
    chars = pd.DataFrame({"e": [10.0, 30.0, 8.0], "f": [np.nan, 20.0, 4.0]}, index=keys)
    est = estimate_tokens(questions, chars, words)
    # math: "one two\nA. a\nB. b" is 6 words in 17 characters, the other 8 in 28
    math = est.per_category.set_index("category").loc["math"]
    assert math["question_tokens"] == 7 and math["tokens_per_char"] == pytest.approx(14 / 45)
    assert math["answer_tokens"] == pytest.approx(20 * 14 / 45)  # the mean of 10, 30 and 20 characters
    assert math["cot_prefix_tokens"] == pytest.approx(5 * (7 + 20 * 14 / 45))
    assert est.prompt[("s", 0)] == pytest.approx(6 + math["cot_prefix_tokens"])
    assert est.answer.loc[("t", 0)].tolist() == pytest.approx([8 * 4 / 8, 4 * 4 / 8])  # law: "x\nA. y z", 4 in 8
    assert np.isnan(est.answer.loc[("s", 0), "f"])  # not measured stays empty


@pytest.fixture(scope="module")
def smollm2():
    return smollm2_tokenizer()


def test_smollm2_counts_tokens_offline(smollm2):
    assert count_tokens(["The following are multiple choice questions", ""], smollm2).tolist() == [6, 0]


def test_a_question_costs_its_prompt_in_and_its_answer_out(pro):
    rows = pro[pro["category"].isin(["law", "math"])]
    chars = load_output_chars(pro)
    est = estimate_tokens(rows, chars, words)
    catalog = load_experts(suite="mmlu_pro")
    prices = {e.name: e for e in catalog}
    asked = rows[pd.MultiIndex.from_frame(rows[["subject", "idx"]]).isin(chars.index)].head(50)
    keys = pd.MultiIndex.from_frame(asked[["subject", "idx"]])
    for expert in (JAMBA, LLAMA3_8B):
        routes = pd.Series(expert, index=asked.index)
        prompt = est.prompt[keys].mean() * prices[expert].input_usd_per_1m
        answer = est.answer.loc[keys, expert].mean() * prices[expert].output_usd_per_1m
        assert usd_per_1000_questions(routes, asked, est, catalog) == pytest.approx((prompt + answer) / 1000)
    with pytest.raises(ValueError, match="no input and output prices"):
        usd_per_1000_questions(pd.Series("openai/gpt-4-1106-preview", index=asked.index), asked, est, load_experts())


def test_the_prompt_outweighs_the_question_on_real_text(pro, smollm2):
    rows = pro[pro["category"].isin(["law", "math"])]
    per_category = estimate_tokens(rows, load_output_chars(pro), smollm2).per_category
    assert per_category["category"].tolist() == ["law", "math"]
    # law about 4.6 characters a token, math (digits one at a time) about 2.3
    assert per_category.set_index("category")["tokens_per_char"].between([0.2, 0.4], [0.25, 0.5]).all()
    assert (per_category["cot_prefix_tokens"] > 5 * per_category["question_tokens"]).all()
