import gzip
import time

import pandas as pd
import pytest

from leeroo_lib.data import suites
from leeroo_lib.data.benchmarks import load_mmlu, question_key
from leeroo_lib.data.splits import duplicates, make_splits
from leeroo_lib.data.suites import check_recorded_join, load_recorded_scores


def test_load_mmlu_offline_has_every_question(questions):
    assert len(questions) == 14_042
    assert questions["subject"].nunique() == 57
    assert questions["subcategory"].nunique() == 17
    assert set(questions["category"]) == {"STEM", "humanities", "social sciences", "other"}
    assert questions["answer"].between(0, 3).all()
    assert questions["choices"].map(len).eq(4).all()
    assert questions.groupby("subject")["idx"].apply(lambda s: s.tolist() == list(range(len(s)))).all()


def test_qkey_follows_provenance_definition(questions):
    row = questions.iloc[0]
    text = "\n".join(" ".join(str(x).split()) for x in (row["question"], *row["choices"]))
    import hashlib

    assert row["qkey"] == hashlib.sha1(text.encode()).hexdigest()[:16]
    assert question_key("  a\n b ", ["x", "y", "z", "w"]) == question_key("a b", ["x", "y", "z", "w"])


def test_every_recorded_row_joins_to_its_question(questions, recorded):
    assert recorded.shape == (13_042, 13)
    check_recorded_join(questions)  # raises on any mismatch
    joined = recorded.join(questions.set_index(["subject", "idx"])[["qkey"]], how="left")
    assert joined["qkey"].notna().all()


def test_join_check_catches_misaligned_questions(questions):
    shuffled = questions.copy()
    shuffled["qkey"] = shuffled.groupby("subject")["qkey"].transform(lambda s: s[::-1].values)
    with pytest.raises(ValueError, match="do not join"):
        check_recorded_join(shuffled)


def test_auto_source_does_not_wait_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    assert len(load_mmlu()) == 14_042
    assert time.perf_counter() - start < 30


def test_unknown_source_is_named():
    with pytest.raises(ValueError, match="unknown MMLU source 'csv'"):
        load_mmlu(source="csv")


def test_recorded_scores_are_floats_with_gaps(recorded):
    assert recorded.index.names == ["subject", "idx"]
    assert set(pd.unique(recorded.values.ravel()[~pd.isna(recorded.values.ravel())])) == {0.0, 1.0}
    assert recorded["openai/gpt-4-1106-preview"].notna().all()
    assert recorded.notna().all(axis=1).sum() == 5_183


def test_corrupt_score_file_names_file_and_fix(data_copy):
    path = data_copy / suites.RECORDED_SCORES_FILE
    raw = gzip.decompress(path.read_bytes()).replace(b",1,", b",0,", 1)
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match=r"corrupt: .*mmlu_recorded_correctness.csv.gz.*git checkout"):
        load_recorded_scores(data_copy)


def test_missing_score_file_names_file_and_fix(data_copy):
    (data_copy / suites.RECORDED_SCORES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"missing: .*mmlu_recorded_correctness.csv.gz.*restore"):
        load_recorded_scores(data_copy)


def test_duplicates_count_copies_across_and_within_splits():
    questions = pd.DataFrame(
        {
            "subject": ["a", "a", "a", "b", "b"],
            "idx": [0, 1, 2, 0, 1],
            "benchmark": "mmlu",
            "qkey": ["k1", "k1", "k2", "k2", "k3"],
        }
    )
    splits = questions[["subject", "idx"]].assign(split=["test", "train", "test", "test", "train"])
    counts = duplicates(questions, splits).set_index("split_pair")
    assert counts["n"].to_dict() == {"test in train": 1, "test in test": 2, "train in train": 0}
    assert counts.loc["test in train", "questions"] == 3


def test_mmlu_test_questions_repeating_a_training_row(questions, recorded):
    """58 of the 5,183 questions the split is drawn from repeat a question that is always training data (not
    measured by all 13 experts); the seeded split draws 22 of them into its test share."""
    counts = duplicates(questions.assign(benchmark="mmlu"), make_splits(recorded, 0.4, seed=0))
    assert counts.set_index("split_pair")["n"].to_dict() == {
        "test in train": 22,
        "test in test": 0,
        "train in train": 144,
    }
