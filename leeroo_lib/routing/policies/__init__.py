"""Policies: read a question, predict each expert's chance of answering it correctly.

Every policy is a small estimator with ``fit(questions, scores)`` and ``predict_proba(questions)``:
``questions`` is a frame as ``data.load_questions()`` returns, ``scores`` the score matrix indexed by
(subject, idx) with one column per expert (1 / 0 / NaN; NaN = not measured, left out of every
loss). ``predict_proba`` gives a frame indexed like ``questions``, one column per expert, in [0, 1].

By kind, one module each: ``baselines`` (no text read: prior, random, subject, oracle),
``embedding`` (frozen sentence embeddings: kNN, matrix factorisation, logistic probe, and these
stacked with the subject's accuracy) and
``neural`` (the paper's: a small LM reads the query, ``EncoderPolicy`` on all-MiniLM-L6-v2,
``CausalLMPolicy`` on SmolLM2 with LoRA or QLoRA). Each class registers the names a profile calls it by
(``registry.register_policy``); a kind's module is imported when the kind is first looked up, so importing
this package does not import torch. ``build(name, cfg.policy, ...)`` builds a policy by such a name, with the
profile's settings for it.
"""

from __future__ import annotations

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
from .registry import policy_class, policy_named, register_policy

__all__ = [
    "FIT_COLUMNS",
    "Policy",
    "build",
    "most_evaluated",
    "policy_class",
    "policy_named",
    "prior_accuracy",
    "register_policy",
    "score_targets",
    "training_questions",
]


def build(name: str, settings: PolicySettings, *, device: str, seed: int, embedder=None) -> Policy:
    """The policy ``name`` (a name its class registers, e.g. ``"leeroo-stacked"``), unfitted, with the keyword
    arguments a profile's policy ``settings`` give it and ``seed``; a kind that runs a model gets ``device``,
    one on sentence embeddings ``embedder`` (pass one embedder to every policy so that each question is embedded
    once). The name is checked here, against the registry: the profile schema cannot import it."""
    kind = policy_named(name)
    arguments = settings.arguments(name)
    takes = inspect.signature(kind).parameters
    shared = {key: value for key, value in {"device": device, "embedder": embedder}.items() if key in takes}
    return kind(**arguments, **shared, seed=seed)
