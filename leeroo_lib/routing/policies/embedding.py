"""Policies on frozen sentence embeddings: the outcomes of the nearest training questions, a
RouteLLM-style matrix factorisation, one logistic probe per expert (cheap enough for self-play to
refit every round), and those readings stacked with the subject's accuracy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ...data.embeddings import SentenceEmbedder
from .base import Policy, most_evaluated_questions, prior_accuracy, score_targets
from .baselines import SubjectPolicy
from .registry import register_policy
from .training import masked_bce, train_with_early_stopping, validation_split


@register_policy("knn")
class KNNPolicy(Policy):
    """The measured outcomes of the ``n_neighbors`` nearest training questions (cosine distance
    of frozen sentence embeddings), each expert averaged over the neighbours where it was measured."""

    def __init__(self, n_neighbors: int = 50, embedder: SentenceEmbedder | None = None, seed: int = 0):
        self.n_neighbors = n_neighbors
        self.embedder = embedder or SentenceEmbedder()
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> KNNPolicy:
        targets = score_targets(questions, scores).to_numpy()
        self.experts_ = list(scores.columns)
        self.targets_ = targets
        self.prior_ = prior_accuracy(targets)
        self.index_ = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(questions)), metric="cosine")
        self.index_.fit(self.embedder.embed(questions))
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        _, neighbours = self.index_.kneighbors(self.embedder.embed(questions))
        outcomes = self.targets_[neighbours]  # questions x neighbours x experts
        measured = ~np.isnan(outcomes)
        total = np.where(measured, outcomes, 0).sum(axis=1)
        count = measured.sum(axis=1)
        return self._frame(np.where(count > 0, total / np.maximum(count, 1), self.prior_), questions)


class _Bilinear(torch.nn.Module):
    """RouteLLM's matrix factorisation: logit_ij = w . (v_j * W e_i) + b_j."""

    def __init__(self, text_dim: int, n_experts: int, dim: int):
        super().__init__()
        self.project = torch.nn.Linear(text_dim, dim, bias=False)
        self.experts = torch.nn.Parameter(torch.randn(n_experts, dim) / dim**0.5)
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.bias = torch.nn.Parameter(torch.zeros(n_experts))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        experts = torch.nn.functional.normalize(self.experts, dim=-1) * self.weight
        return self.project(embeddings) @ experts.T + self.bias


@register_policy("mf")
class MatrixFactorizationPolicy(Policy):
    """Matrix factorisation in the style of RouteLLM over frozen sentence embeddings: questions and
    experts share a ``dim``-dimensional space; trained full-batch with masked BCE, stopped early on
    a validation part of the training rows."""

    def __init__(
        self,
        dim: int = 64,
        epochs: int = 300,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        val_fraction: float = 0.1,
        patience: int = 20,
        embedder: SentenceEmbedder | None = None,
        seed: int = 0,
    ):
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.embedder = embedder or SentenceEmbedder()
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> MatrixFactorizationPolicy:
        torch.manual_seed(self.seed)
        targets = torch.tensor(score_targets(questions, scores).to_numpy(), dtype=torch.float32)
        embeddings = torch.tensor(self.embedder.embed(questions), dtype=torch.float32)
        self.experts_ = list(scores.columns)
        self.model_ = _Bilinear(embeddings.shape[1], len(self.experts_), self.dim)
        with torch.no_grad():
            self.model_.bias.copy_(torch.logit(torch.tensor(prior_accuracy(targets.numpy())).clamp(0.01, 0.99)))
        train, val = validation_split(len(questions), self.val_fraction, self.seed)

        def batches_for_epoch(rng):
            yield self.model_(embeddings[train]), targets[train]

        def evaluate():
            with torch.no_grad():
                return masked_bce(self.model_(embeddings[val]), targets[val]).item()

        self.history_ = train_with_early_stopping(
            batches_for_epoch,
            evaluate,
            [{"params": self.model_.parameters(), "lr": self.lr}],
            self.model_.state_dict,
            self.model_.load_state_dict,
            epochs=self.epochs,
            patience=self.patience,
            weight_decay=self.weight_decay,
            seed=self.seed,
        )
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        embeddings = torch.tensor(self.embedder.embed(questions), dtype=torch.float32)
        with torch.no_grad():
            return self._frame(torch.sigmoid(self.model_(embeddings)).numpy(), questions)


@register_policy("logistic-probe")
class LogisticProbePolicy(Policy):
    """One logistic regression per expert on frozen sentence embeddings: cheap enough to refit
    every round on 2 CPU cores. An expert with too few outcomes (one class only, or none) gets its
    observed accuracy (0.5 when never measured).

    ``subject=False`` (self-play's probe) reads the unit-length embedding as it is; ``subject=True`` (a base
    of ``StackedPolicy``) standardises it on the fitted rows and adds the subject's one-hot, so that a small
    ``C`` shrinks every direction alike and the probe starts from each subject's accuracy."""

    def __init__(self, embedder: SentenceEmbedder | None = None, C: float = 1.0, subject: bool = False, seed: int = 0):
        self.embedder = embedder or SentenceEmbedder()
        self.C = C
        self.subject = subject
        self.seed = seed

    @property
    def reads(self) -> tuple[str, ...]:
        return (*super().reads, "subject") if self.subject else super().reads

    def _features(self, questions: pd.DataFrame, embedded: np.ndarray) -> np.ndarray:
        if not self.subject:
            return embedded
        return np.hstack([self.scaler_.transform(embedded), self.subjects_.transform(questions[["subject"]])])

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame, sample_weight=None) -> LogisticProbePolicy:
        targets = score_targets(questions, scores).to_numpy()
        weight = np.ones(len(questions)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        embedded = self.embedder.embed(questions)
        if self.subject:
            self.scaler_ = StandardScaler().fit(embedded)
            self.subjects_ = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(questions[["subject"]])
        x = self._features(questions, embedded)
        self.experts_ = list(scores.columns)
        self.prior_ = prior_accuracy(targets)
        self.models_ = {}
        for j, expert in enumerate(self.experts_):
            measured = ~np.isnan(targets[:, j])
            y = targets[measured, j]
            if len(np.unique(y)) == 2:
                self.models_[expert] = LogisticRegression(C=self.C, max_iter=300, random_state=self.seed).fit(
                    x[measured], y, sample_weight=weight[measured]
                )
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        x = self._features(questions, self.embedder.embed(questions))
        proba = np.tile(self.prior_, (len(questions), 1))
        for j, expert in enumerate(self.experts_):
            if expert in self.models_:
                proba[:, j] = _success_proba(self.models_[expert], x)
        return self._frame(proba, questions)


def _success_proba(model: LogisticRegression, x: np.ndarray) -> np.ndarray:
    """``model.predict_proba(x)[:, 1]`` as scikit-learn computes it for two classes, bit for bit, without its input
    checks: the stacked policy reads a service's one question through two regressions per expert, and the checks
    took most of their time."""
    return expit(x @ model.coef_.T + model.intercept_)[:, 0]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


@register_policy("leeroo-stacked")
class StackedPolicy(Policy):
    """Three cheap readings of a question stacked: the subject's accuracy (``SubjectPolicy``), the
    outcomes of its ``n_neighbors`` nearest training questions (``KNNPolicy``) and a logistic probe on
    the embedding and subject (``LogisticProbePolicy(subject=True)``). Per expert, a logistic regression
    (``stack_C``) reads the logits of every base for that expert and for its partners: the experts measured
    on at least half of its training questions (outcomes of experts are correlated; an expert measured
    elsewhere, e.g. on another suite's questions, would only add noise). It learns from the bases'
    out-of-fold predictions (``inner_folds`` over the fitted rows, seeded), so it weighs them as they do on
    unseen questions; then the bases are refitted on every row. Chosen by 5-fold cross-validation inside the
    training split (``leeroo cv``). ``train_questions`` caps the questions fit reads (those
    with the most measured experts first; None: all)."""

    def __init__(
        self,
        embedder: SentenceEmbedder | None = None,
        smoothing: float = 10.0,
        n_neighbors: int = 50,
        C: float = 0.001,
        stack_C: float = 1.0,
        inner_folds: int = 5,
        train_questions: int | None = None,
        seed: int = 0,
    ):
        self.embedder = embedder or SentenceEmbedder()
        self.smoothing = smoothing
        self.n_neighbors = n_neighbors
        self.C = C
        self.stack_C = stack_C
        self.inner_folds = inner_folds
        self.train_questions = train_questions
        self.seed = seed

    @property
    def reads(self) -> tuple[str, ...]:
        return (*super().reads, "subject")

    def _bases(self) -> list[Policy]:
        return [
            SubjectPolicy(smoothing=self.smoothing, seed=self.seed),
            KNNPolicy(n_neighbors=self.n_neighbors, embedder=self.embedder, seed=self.seed),
            LogisticProbePolicy(self.embedder, C=self.C, subject=True, seed=self.seed),
        ]

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> StackedPolicy:
        questions = most_evaluated_questions(questions, scores, self.train_questions, self.seed)
        targets = score_targets(questions, scores).to_numpy()
        self.experts_ = list(scores.columns)
        self.prior_ = prior_accuracy(targets)
        out_of_fold = [np.full(targets.shape, np.nan) for _ in self._bases()]
        folds = KFold(min(self.inner_folds, len(questions)), shuffle=True, random_state=self.seed)
        for fit_rows, held_out in folds.split(questions):
            for b, base in enumerate(self._bases()):
                base.fit(questions.iloc[fit_rows], scores)
                out_of_fold[b][held_out] = base.predict_proba(questions.iloc[held_out]).to_numpy()
        measured = ~np.isnan(targets)
        shared = measured.T.astype(float) @ measured / np.maximum(measured.sum(axis=0), 1)[:, None]
        self.partners_ = {expert: np.flatnonzero(shared[j] >= 0.5) for j, expert in enumerate(self.experts_)}
        self.stackers_ = {}
        for j, expert in enumerate(self.experts_):
            rows = measured[:, j]
            if len(np.unique(targets[rows, j])) == 2:
                self.stackers_[expert] = LogisticRegression(C=self.stack_C, max_iter=2000).fit(
                    self._design(out_of_fold, expert)[rows], targets[rows, j]
                )
        self.bases_ = [base.fit(questions, scores) for base in self._bases()]
        return self

    def _design(self, base_predictions: list[np.ndarray], expert: str) -> np.ndarray:
        """The stacker's input for ``expert``: every base's logits for it and its partners."""
        return np.hstack([_logit(p[:, self.partners_[expert]]) for p in base_predictions])

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        predictions = [base.predict_proba(questions).to_numpy() for base in self.bases_]
        proba = np.tile(self.prior_, (len(questions), 1))
        for j, expert in enumerate(self.experts_):
            if expert in self.stackers_:
                proba[:, j] = _success_proba(self.stackers_[expert], self._design(predictions, expert))
        return self._frame(proba, questions)
