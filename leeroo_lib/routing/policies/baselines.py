"""Policies that read no text: the best single expert, random mixes, the subject's best expert, and
the oracle. The learned policies must beat the first three; the oracle is the ceiling."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import FIT_COLUMNS, Policy, prior_accuracy, score_targets
from .registry import register_policy


@register_policy("best-single-expert")
class PriorPolicy(Policy):
    """Query-blind: every question gets each expert's training accuracy. Routed under a budget it
    is the best single expert the budget affords (mixed with the next better one when leftover
    budget allows)."""

    reads = ()

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> PriorPolicy:
        self.experts_ = list(scores.columns)
        self.accuracy_ = prior_accuracy(score_targets(questions, scores).to_numpy())
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        return self._frame(np.tile(self.accuracy_, (len(questions), 1)), questions)


@register_policy("random-mix")
class RandomPolicy(Policy):
    """Uniform noise in place of a prediction: routed under a budget, a random mix at that cost."""

    reads = ()

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> RandomPolicy:
        self.experts_ = list(scores.columns)
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        return self._frame(rng.random((len(questions), len(self.experts_))), questions)


@register_policy("subject-best")
class SubjectPolicy(Policy):
    """Each expert's accuracy on the question's subject, shrunk towards its overall accuracy by
    ``smoothing`` pseudo-questions (small subjects would otherwise crown a lucky expert)."""

    reads = ("subject",)

    def __init__(self, smoothing: float = 10.0, seed: int = 0):
        self.smoothing = smoothing
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> SubjectPolicy:
        targets = score_targets(questions, scores)
        self.experts_ = list(scores.columns)
        self.prior_ = prior_accuracy(targets.to_numpy())
        grouped = targets.groupby(questions["subject"].to_numpy())
        self.by_subject_ = (grouped.sum() + self.smoothing * self.prior_) / (grouped.count() + self.smoothing)
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        known = self.by_subject_.reindex(questions["subject"].to_numpy()).to_numpy()
        return self._frame(np.where(np.isnan(known), self.prior_, known), questions)


@register_policy()
class OraclePolicy(Policy):
    """The measured outcomes themselves: the upper bound any policy could reach. Never fitted.
    NaN where an expert was not measured: route it only over questions its pool's experts all cover."""

    reads = FIT_COLUMNS

    def __init__(self, scores: pd.DataFrame, seed: int = 0):
        self.scores = scores
        self.seed = seed
        self.experts_ = list(scores.columns)

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> OraclePolicy:
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        return self._frame(score_targets(questions, self.scores).to_numpy(), questions)
