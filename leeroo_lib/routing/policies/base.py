"""What every policy shares: the estimator contract, the argument checks, saving, and the
training questions and targets a policy learns from. Light on purpose (no torch): ``evaluate``,
``universe``, ``aiq`` and ``orchestrator`` import from here.
"""

from __future__ import annotations

import functools
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ...data.splits import split_index
from ...validation import check_question_frame, check_questions, check_scores


def score_targets(questions: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``scores`` for ``questions``, indexed like ``questions`` (NaN kept: not measured)."""
    keys = questions.set_index(["subject", "idx"]).index
    missing = ~keys.isin(scores.index)
    if missing.any():
        raise ValueError(
            f"{missing.sum()} questions have no row in the score matrix (first: {list(keys[missing][:3])}); "
            "fit a policy only on questions that were scored"
        )
    return pd.DataFrame(scores.reindex(keys).to_numpy(np.float64), index=questions.index, columns=scores.columns)


def most_evaluated(training_set: pd.DataFrame, n: int | None, seed: int) -> pd.MultiIndex:
    """The ``n`` training rows with the most measured experts (seeded order among equals).

    A learned policy pays per question read, not per label, so when time caps the questions a
    policy reads, the rows that carry the most labels come first. ``n=None`` keeps every row.
    """
    if n is None or n >= len(training_set):
        return training_set.index
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(training_set)), -training_set.notna().sum(axis=1).to_numpy()))
    return training_set.index[np.sort(order[:n])]


def most_evaluated_questions(questions: pd.DataFrame, scores: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """The rows of ``questions`` that ``most_evaluated`` keeps of their scores: what a policy with a cap
    on the questions it reads fits on."""
    if n is None:
        return questions
    keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
    return questions[keys.isin(most_evaluated(score_targets(questions, scores).set_index(keys), n, seed))]


def training_questions(
    questions: pd.DataFrame, training_set: pd.DataFrame, splits: pd.DataFrame, n: int | None, seed: int
) -> pd.DataFrame:
    """The questions a policy learns from: up to ``n`` rows of the training set (most_evaluated),
    after checking that none of them is a test-split question."""
    leaked = training_set.index.isin(split_index(splits, "test"))
    if leaked.any():
        raise ValueError(
            f"{leaked.sum()} training-set rows are test-split questions "
            f"(first: {list(training_set.index[leaked][:3])}): "
            "the training set must be drawn from the train split only; rerun notebooks/03_selfplay.ipynb"
        )
    keys = questions.set_index(["subject", "idx"]).index
    return questions[keys.isin(most_evaluated(training_set, n, seed))]


def prior_accuracy(targets: np.ndarray) -> np.ndarray:
    """Each expert's accuracy over its measured rows; 0.5 for an expert never measured."""
    measured = ~np.isnan(targets)
    total = np.where(measured, targets, 0).sum(axis=0)
    count = measured.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.5)


# The columns fit reads besides the policy's own: they find each question's row of the score matrix.
FIT_COLUMNS = ("subject", "idx")


def _checked_fit(fit):
    @functools.wraps(fit)
    def checked(self, questions, scores, *args, **kwargs):
        reader = f"{type(self).__name__}.fit"
        check_questions(questions, tuple(dict.fromkeys(FIT_COLUMNS + self.reads)), reader)
        if questions.empty:
            raise ValueError(f"{reader} got no question: fit a policy on at least one scored question")
        check_scores(scores)
        return fit(self, questions, scores, *args, **kwargs)

    return checked


def _checked_predict_proba(predict_proba):
    @functools.wraps(predict_proba)
    def checked(self, questions):
        if not hasattr(self, "experts_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(questions, scores) first")
        check_question_frame(questions)
        if questions.empty:
            return self._frame(np.empty((0, len(self.experts_))), questions)
        check_questions(questions, self.reads, f"{type(self).__name__}.predict_proba")
        return predict_proba(self, questions)

    return checked


class Policy(BaseEstimator):
    """The shared part of every policy: its experts, the columns it reads, the output frame, saving
    and loading.

    A policy follows scikit-learn's conventions (``BaseEstimator``): its settings are the arguments of
    ``__init__``, kept under their own names, so ``get_params``, ``clone`` and saving read them from
    the signature; what ``fit`` learns ends in ``_``.

    Every subclass's ``fit`` and ``predict_proba`` check their arguments first (they are wrapped when
    the subclass is defined), so a frame without the columns a policy reads fails before any model
    reads a question, and an empty frame predicts an empty frame.
    """

    experts_: list[str]

    @property
    def reads(self) -> tuple[str, ...]:
        """The columns of ``questions`` predict_proba reads (fit reads FIT_COLUMNS too). A policy on
        sentence embeddings reads what its embedder reads; the others declare theirs."""
        return getattr(getattr(self, "embedder", None), "reads", ())

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__:
            cls.fit = _checked_fit(cls.__dict__["fit"])
        if "predict_proba" in cls.__dict__:
            cls.predict_proba = _checked_predict_proba(cls.__dict__["predict_proba"])

    def _frame(self, proba: np.ndarray, questions: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.clip(proba, 0.0, 1.0), index=questions.index, columns=self.experts_)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path / "policy.joblib")

    @classmethod
    def load(cls, path: Path) -> Policy:
        return joblib.load(Path(path) / "policy.joblib")
