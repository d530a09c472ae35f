"""Checks at the library's entry points (routing, allocation, policies).

A bad argument fails here, before any model reads a question, with one ``TypeError`` (wrong kind
of value) or ``ValueError`` (right kind, wrong value) that names the argument and says how to fix
it, instead of an error from deep inside numpy, pandas or a tokenizer after the work was done.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np
import pandas as pd

MAX_CHOICES = 10  # lettered A-J by data.benchmarks.question_texts
QUESTION_COLUMNS_HINT = (
    "build the frame like data.benchmarks.load_questions(): subject, idx, question (text), choices (a list of "
    "the answer texts) and qkey = data.benchmarks.question_key(question, choices)"
)


def check_budget(budget, name: str = "budget") -> None:
    """A budget is a finite number of USD per 1M tokens, not a string, a bool, None, NaN or inf."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise TypeError(
            f"{name} must be a number (mean USD per 1M tokens per question), got {budget!r} "
            f"({type(budget).__name__}), e.g. {name}=0.6"
        )
    if not math.isfinite(budget):
        raise ValueError(f"{name} must be a finite number of USD per 1M tokens, got {budget!r}, e.g. {name}=0.6")


def check_budgets(budgets) -> list:
    """Several budgets: a list of numbers (``route`` takes one)."""
    if isinstance(budgets, (str, bytes, numbers.Number)) or not isinstance(budgets, Iterable):
        raise TypeError(
            f"budgets must be a list of numbers, got {budgets!r}; for one budget call route(questions, budget)"
        )
    budgets = list(budgets)
    if not budgets:
        raise ValueError("budgets is empty: give at least one budget (mean USD per 1M tokens per question)")
    for i, budget in enumerate(budgets):
        check_budget(budget, f"budgets[{i}]")
    return budgets


def check_expert_names(experts, known: list[str], name: str = "experts") -> list[str]:
    """A non-empty list of distinct expert names, each one of ``known``."""
    if isinstance(experts, (str, bytes)) or not isinstance(experts, Iterable):
        raise TypeError(
            f"{name} must be a list of expert names, got {experts!r} ({type(experts).__name__}); "
            f"for one expert write {name}=[{experts!r}]"
        )
    experts = list(experts)
    if not experts:
        raise ValueError(f"{name} is empty: name at least one of {known}")
    repeated = sorted({e for e in experts if experts.count(e) > 1}, key=str)
    if repeated:
        raise ValueError(f"{name} names {repeated} more than once: list each expert once")
    unknown = [e for e in experts if e not in known]
    if unknown:
        raise ValueError(f"{name}: unknown expert(s) {unknown}: the known experts are {known}")
    return experts


def _bad_positions(values: pd.Series, is_good) -> list[int]:
    return [i for i, value in enumerate(values) if not is_good(value)]


def _is_str(value) -> bool:
    return isinstance(value, str)


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_choices(value) -> bool:
    return (
        isinstance(value, (list, tuple, np.ndarray))
        and len(value) <= MAX_CHOICES
        and all(isinstance(choice, str) for choice in value)
    )


def _is_index(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# What each question column must hold, and how to say it.
COLUMN_CHECKS = {
    "subject": (_is_str, "a subject name (text; empty when unknown)"),
    "idx": (_is_index, "an integer (the question's row in its subject)"),
    "question": (_is_text, "the question's text"),
    "choices": (_is_choices, f"a list of up to {MAX_CHOICES} answer texts (not one string; empty for none)"),
    "qkey": (_is_text, "the question's key, data.question_key(question, choices)"),
}


def check_question_frame(questions) -> None:
    """``questions`` is a DataFrame, one row per question."""
    if not isinstance(questions, pd.DataFrame):
        raise TypeError(
            f"questions must be a pandas DataFrame, got {type(questions).__name__}; {QUESTION_COLUMNS_HINT}"
        )


def check_questions(questions, columns: tuple[str, ...], reader: str) -> None:
    """``questions`` is a frame with the ``columns`` that ``reader`` reads, each holding what it should."""
    check_question_frame(questions)
    missing = [c for c in columns if c not in questions.columns]
    if missing:
        raise ValueError(
            f"questions lack the column(s) {missing} that {reader} reads (it needs {list(columns)}); "
            f"{QUESTION_COLUMNS_HINT}"
        )
    for column in columns:
        if column not in COLUMN_CHECKS:
            continue  # a column of the policy's own: its presence is all that is known
        is_good, what = COLUMN_CHECKS[column]
        bad = _bad_positions(questions[column], is_good)
        if bad:
            raise ValueError(
                f"questions['{column}'] must hold {what} in every row; {len(bad)} row(s) do not "
                f"(first: row {questions.index[bad[0]]} holds {questions[column].iloc[bad[0]]!r})"
            )


def check_scores(scores) -> None:
    """A score matrix: a frame with one column per expert, each named once."""
    if not isinstance(scores, pd.DataFrame):
        raise TypeError(
            f"scores must be a pandas DataFrame indexed by (subject, idx) with one column per expert "
            f"(1 / 0 / NaN), got {type(scores).__name__}"
        )
    if scores.shape[1] == 0:
        raise ValueError("scores has no expert column: give one column per expert (1 / 0 / NaN)")
    repeated = sorted(set(scores.columns[scores.columns.duplicated()]), key=str)
    if repeated:
        raise ValueError(f"scores has the expert column(s) {repeated} more than once: keep one column per expert")
