"""Policies on frozen sentence embeddings: the outcomes of the nearest training questions, a
RouteLLM-style matrix factorisation, and one logistic probe per expert (cheap enough for self-play to
refit every round)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors

from ..embeddings import SentenceEmbedder
from .base import Policy, prior_accuracy, score_targets
from .training import masked_bce, train_with_early_stopping, validation_split


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


class LogisticProbePolicy(Policy):
    """One logistic regression per expert on frozen sentence embeddings: cheap enough to refit
    every round on 2 CPU cores. An expert with too few outcomes (one class only, or none) gets its
    observed accuracy (0.5 when never measured)."""

    def __init__(self, embedder, C: float = 1.0, seed: int = 0):
        self.embedder = embedder
        self.C = C
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame, sample_weight=None) -> LogisticProbePolicy:
        targets = score_targets(questions, scores).to_numpy()
        weight = np.ones(len(questions)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        x = self.embedder.embed(questions)
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
        x = self.embedder.embed(questions)
        proba = np.tile(self.prior_, (len(questions), 1))
        for j, expert in enumerate(self.experts_):
            if expert in self.models_:
                proba[:, j] = self.models_[expert].predict_proba(x)[:, 1]
        return self._frame(proba, questions)
