"""The notebooks' setup object: each input read once, and only when a notebook first asks for it."""

import pandas as pd
import pytest

from leeroo_lib.config import OUTPUT_DIR_ENV
from leeroo_lib.evaluation.study import load_study


def test_a_study_reads_nothing_until_asked_and_names_the_notebook_that_writes_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(tmp_path))
    study = load_study("smoke")  # an empty run folder: no notebook has run
    assert study.profile.name == "smoke" and study.compared_set == "full"  # the smoke profile trains on selfplay
    with pytest.raises(FileNotFoundError, match="02_universe"):
        _ = study.served
    with pytest.raises(FileNotFoundError, match="01_expert_scoring"):
        _ = study.scores


def test_a_study_reads_each_input_once_and_judges_pools_on_fully_measured_test_questions(tmp_path, monkeypatch):
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(tmp_path))
    study = load_study("smoke")
    questions = study.questions
    assert study.questions is questions  # cached: read once per notebook
    pro = study.questions_of("mmlu_pro")
    assert set(pro["benchmark"]) == {"mmlu_pro"} and study.questions_of("mmlu_pro") is pro
    # stand-ins for notebook 01's outputs: three MMLU test questions, expert a unmeasured on the last
    tested = questions[questions["benchmark"] == "mmlu"].head(3)
    study.__dict__["splits"] = tested[["subject", "idx"]].assign(split="test")
    keys = pd.MultiIndex.from_frame(tested[["subject", "idx"]])
    study.__dict__["scores"] = pd.DataFrame({"a": [1.0, 0.0, None], "b": [1.0, 1.0, 1.0]}, index=keys)
    assert len(study.test) == 3
    pool = next(name for name, spec in study.pools.items() if spec.benchmark == "mmlu")
    judged = study.judged({pool: ["a", "b"]}, limit=None)[pool]
    assert list(zip(judged["subject"], judged["idx"])) == sorted(keys[:2])
