"""Recorded suites: the committed per-question results of real experts, each file checked against
data/SHA256SUMS before it is read (PROVENANCE.md says where each comes from), the paper's own numbers and which
of this repo's systems answers each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .benchmarks import LETTERS, MMLU_LETTERS, gold_letters
from .files import verify_data_file

RECORDED_SCORES_FILE = "mmlu_recorded_correctness.csv.gz"


HELM_PREDICTIONS_FILE = "mmlu_helm_predictions.csv.gz"
MMLU_PRO_PREDICTIONS_FILE = "mmlu_pro_predictions.csv.gz"
MMLU_PRO_OUTPUT_CHARS_FILE = "mmlu_pro_output_chars.csv.gz"


def load_recorded_scores(data_dir: Path | None = None) -> pd.DataFrame:
    """The recorded 0/1 results of the 13 real experts: index (subject, idx), one float column per
    expert, NaN where the expert was not measured on that question."""
    path = verify_data_file(RECORDED_SCORES_FILE, data_dir)
    df = pd.read_csv(path)
    experts = [c for c in df.columns if c not in ("subject", "idx", "qkey")]
    values = df[experts]
    if not values.isin([0, 1]).where(values.notna(), True).all().all():
        raise ValueError(f"{path}: expert columns must hold 0, 1 or empty; restore the file from git")
    return df.set_index(["subject", "idx"])[experts].astype(np.float64)


def _check_join(keyed: pd.DataFrame, questions: pd.DataFrame, what: str) -> None:
    """Raise unless every row of ``keyed`` (subject, idx, qkey) names a question whose text hashes to its qkey."""
    joined = keyed[["subject", "idx", "qkey"]].merge(
        questions[["subject", "idx", "qkey"]], on=["subject", "idx"], how="left", suffixes=("", "_text")
    )
    bad = joined[joined["qkey"] != joined["qkey_text"]]
    if len(bad):
        raise ValueError(
            f"{len(bad)} {what} rows do not join to their question "
            f"(first: {bad[['subject', 'idx']].head(3).values.tolist()}); the question source and the "
            f"{what} file disagree"
        )


def check_recorded_join(questions: pd.DataFrame, data_dir: Path | None = None) -> None:
    """Raise unless every recorded row names a question whose text hashes to the recorded qkey."""
    recorded = pd.read_csv(verify_data_file(RECORDED_SCORES_FILE, data_dir), usecols=["subject", "idx", "qkey"])
    _check_join(recorded, questions, "recorded")


@dataclass(frozen=True)
class LetterSuite:
    """A recorded suite that keeps the letter each expert answered (PROVENANCE.md): its file, the letters
    a cell may hold, what a cell holds when the expert answered with no letter it could be read from
    (counted wrong) and, where some experts were not asked every question, what an unmeasured cell holds.
    Rows name their question by (subject, idx, qkey) or by the benchmark's ``question_id``."""

    file: str
    letters: str
    no_letter: str
    unmeasured: str | None = None


LETTER_SUITES = {
    "helm": LetterSuite(HELM_PREDICTIONS_FILE, MMLU_LETTERS, no_letter=""),
    "mmlu_pro": LetterSuite(MMLU_PRO_PREDICTIONS_FILE, LETTERS, no_letter="?", unmeasured=""),
}


def _suite(name: str) -> LetterSuite:
    if name not in LETTER_SUITES:
        raise ValueError(f"unknown letter suite '{name}': use one of {sorted(LETTER_SUITES)}")
    return LETTER_SUITES[name]


def _keyed(df: pd.DataFrame, questions: pd.DataFrame, what: str) -> pd.DataFrame:
    """``df`` with the (subject, idx) of its questions as index, after checking every row joins."""
    if "question_id" in df.columns:
        if "question_id" not in questions.columns:
            raise ValueError(f"the {what} rows name questions by question_id: pass questions that have one")
        with_id = questions.dropna(subset=["question_id"])
        by_id = with_id.set_index(with_id["question_id"].astype(int).astype(str))
        unknown = sorted(set(df["question_id"]) - set(by_id.index))
        if unknown:
            raise ValueError(
                f"{len(unknown)} {what} rows name question_ids the questions do not hold (first: {unknown[:3]}); "
                "pass the benchmark's questions (load_questions)"
            )
        rows = by_id.loc[df["question_id"], ["subject", "idx"]]
        return df.set_axis(pd.MultiIndex.from_frame(rows.reset_index(drop=True)))
    df["idx"] = df["idx"].astype(int)
    _check_join(df, questions, what)
    return df.set_index(["subject", "idx"])


def _read_suite(name: str, questions: pd.DataFrame, data_dir: Path | None) -> pd.DataFrame:
    suite = _suite(name)
    path = verify_data_file(suite.file, data_dir)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    experts = [c for c in df.columns if c not in ("subject", "idx", "qkey", "question_id")]
    allowed = set(suite.letters) | {suite.no_letter} | ({suite.unmeasured} if suite.unmeasured is not None else set())
    odd = sorted(set(np.unique(df[experts].to_numpy())) - allowed)
    if odd:
        raise ValueError(
            f"{path}: expert columns must hold {', '.join(suite.letters)} or {suite.no_letter!r} (no letter)"
            + (f" or {suite.unmeasured!r} (not measured)" if suite.unmeasured is not None else "")
            + f", found {odd[:5]}; restore the file from git"
        )
    return _keyed(df, questions, name)[experts]


def load_letters(suite: str, questions: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """The letter each expert of a letter suite answered: index (subject, idx), one column per expert,
    NaN where it gave no letter or was not asked. ``questions`` (``load_questions``) checks the join."""
    cells = _read_suite(suite, questions, data_dir)
    return cells.where(cells.isin(list(_suite(suite).letters)))


def load_letter_scores(suite: str, questions: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """The suite's correctness, shaped like ``load_recorded_scores``: 1.0 where the letter is the gold
    answer of ``questions``, 0.0 where it is another letter or none (counted wrong), NaN where the
    expert was not asked."""
    cells = _read_suite(suite, questions, data_dir)
    gold = gold_letters(questions).reindex(cells.index)
    scores = cells.eq(gold, axis=0).astype(np.float64)
    unmeasured = _suite(suite).unmeasured
    return scores if unmeasured is None else scores.mask(cells.eq(unmeasured))


def load_output_chars(questions: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """MMLU-Pro: the length in characters of each expert's answer (its chain of thought), index
    (subject, idx), NaN where not measured."""
    df = pd.read_csv(verify_data_file(MMLU_PRO_OUTPUT_CHARS_FILE, data_dir), dtype={"question_id": str})
    return _keyed(df, questions, "output length").drop(columns="question_id").astype(np.float64)


def recorded_results(benchmark: str, questions: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """Every recorded result on one benchmark's ``questions``, 1 / 0 / NaN, index (subject, idx): MMLU's 13
    experts of the paper's era with HELM's eight frontier models beside them on the same rows, MMLU-Pro's 29."""
    if benchmark == "mmlu":
        check_recorded_join(questions, data_dir)
        return load_recorded_scores(data_dir).join(load_letter_scores("helm", questions, data_dir), how="left")
    if benchmark == "mmlu_pro":
        return load_letter_scores("mmlu_pro", questions, data_dir)
    raise ValueError(f"no recorded results for benchmark '{benchmark}': the recorded ones are 'mmlu' and 'mmlu_pro'")


def split_basis(benchmark: str, results: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """The results whose fully measured rows a benchmark's test split is drawn from (``splits.make_splits``):
    MMLU the 13 experts of the paper's era (5,183 questions), MMLU-Pro every expert measured on all of its
    questions (26 of 29, all 10,786 questions: DeepSeek-Coder-V2 and the Gemini models miss some)."""
    if benchmark == "mmlu":
        return results[load_recorded_scores(data_dir).columns]
    return results.loc[:, results.notna().all()]


PAPER_RESULTS_FILE = "paper_results.csv"


def paper_rows(data_dir: Path | None = None) -> pd.DataFrame:
    """The paper's own Table 1 and Figure 4 numbers, accuracy as a fraction."""
    df = pd.read_csv(verify_data_file(PAPER_RESULTS_FILE, data_dir))
    return pd.DataFrame(
        {
            "system": df["system"],
            "cost_per_1m_usd": df["cost_per_1m_usd"],
            "accuracy": df["mmlu_accuracy"] / 100,
            "source": "paper",
            "note": df["where_in_paper"],
        }
    )


PAPER_COUNTERPARTS_FILE = "paper_counterparts.csv"


def paper_counterparts(data_dir: Path | None = None) -> pd.DataFrame:
    """The rows of the paper's Table 1 and Figure 4 that this repo measures, in the order its tables show them: the
    paper's row (``paper_system``, ``paper_cost_per_1m_usd``: its key in ``paper_rows``), the paper's pool it
    belongs to (``paper_pool``, which a profile's pool stands for), and the system of this repo that answers it (a
    ``kind`` of results/table1.csv: a single ``expert``, Leeroo at ``budget``, the pool's oracle). The pairing is
    this project's reading of the paper, kept apart from the paper's numbers, which are a verbatim copy."""
    return pd.read_csv(verify_data_file(PAPER_COUNTERPARTS_FILE, data_dir))
