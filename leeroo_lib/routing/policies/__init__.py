"""Policies: read a question, predict each expert's chance of answering it correctly.

Every policy is a small estimator with ``fit(questions, scores)`` and ``predict_proba(questions)``:
``questions`` is a frame as ``data.load_questions()`` returns, ``scores`` the score matrix indexed by
(subject, idx) with one column per expert (1 / 0 / NaN; NaN = not measured, left out of every
loss). ``predict_proba`` gives a frame indexed like ``questions``, one column per expert, in [0, 1].

By kind, one module each: ``baselines`` (no text read: prior, random, subject, oracle),
``embedding`` (frozen sentence embeddings: kNN, matrix factorisation, logistic probe, and these
stacked with the subject's accuracy) and
``neural`` (the paper's: a small LM reads the query, ``EncoderPolicy`` on all-MiniLM-L6-v2,
``CausalLMPolicy`` on SmolLM2 with LoRA or QLoRA). ``POLICIES`` names every kind; a kind's module
is imported when the kind is first used, so importing this package does not import torch.
``build(name, cfg.policy, ...)`` builds a policy by the name notebook 04 and the benchmarks give it
(``config.PolicySettings.KINDS``), with the profile's settings for it.
"""

from __future__ import annotations

import importlib
import inspect

from ...config import PolicySettings
from .base import (
    FIT_COLUMNS,
    Policy,
    most_evaluated,
    prior_accuracy,
    score_targets,
    training_questions,
)

# every policy kind, by class name (what a saved orchestrator records), and the module that defines it
POLICIES = {
    "PriorPolicy": "baselines",
    "RandomPolicy": "baselines",
    "SubjectPolicy": "baselines",
    "OraclePolicy": "baselines",
    "KNNPolicy": "embedding",
    "MatrixFactorizationPolicy": "embedding",
    "LogisticProbePolicy": "embedding",
    "StackedPolicy": "embedding",
    "EncoderPolicy": "neural",
    "CausalLMPolicy": "neural",
}

__all__ = [
    "FIT_COLUMNS",
    "POLICIES",
    "Policy",
    "build",
    "most_evaluated",
    "policy_class",
    "prior_accuracy",
    "score_targets",
    "training_questions",
    *POLICIES,
]


def policy_class(kind: str) -> type[Policy]:
    """The class of a policy kind, e.g. ``policy_class("EncoderPolicy")``."""
    if kind not in POLICIES:
        raise ValueError(f"unknown policy kind {kind!r}; known kinds: {sorted(POLICIES)}")
    return getattr(importlib.import_module(f"{__name__}.{POLICIES[kind]}"), kind)


def build(name: str, settings: PolicySettings, *, device: str, seed: int, embedder=None) -> Policy:
    """The policy ``name`` (a key of ``PolicySettings.KINDS``, e.g. ``"leeroo-stacked"``), unfitted, with
    the keyword arguments a profile's policy ``settings`` give it and ``seed``; a kind that runs a model
    gets ``device``, one on sentence embeddings ``embedder`` (pass one embedder to every policy so that
    each question is embedded once)."""
    arguments = settings.arguments(name)
    kind = policy_class(settings.KINDS[name])
    takes = inspect.signature(kind).parameters
    shared = {key: value for key, value in {"device": device, "embedder": embedder}.items() if key in takes}
    return kind(**arguments, **shared, seed=seed)


def __getattr__(name: str):
    """``from leeroo_lib.routing.policies import EncoderPolicy`` imports the neural module only then."""
    if name in POLICIES:
        return policy_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
