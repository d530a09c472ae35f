"""How much a policy's predictions say about each expert's outcome, and how much of that is more than
the subject of the question.

A router gains over the best single expert only where it can tell, question by question, which expert
is right. ``auc`` (ROC AUC of the predicted chance of success against the measured outcome) measures
that signal; ``auc_within_subject`` keeps only the pairs of questions of the same subject (a positive
and a negative outcome of one expert), so a policy that knows nothing but each subject's accuracy
scores 0.5 on it. ``brier`` and ``ece`` (expected calibration error, 10 equal-width bins) measure
calibration, which the budgeted allocation of Eq. 1 relies on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

SIGNAL_COLUMNS = ["policy", "expert", "n", "auc", "auc_within_subject", "brier", "ece"]


def within_group_auc(score: np.ndarray, outcome: np.ndarray, groups: np.ndarray) -> float:
    """AUC over (positive, negative) pairs of the same group: per-group AUCs weighted by their number
    of such pairs; groups with one class only have none. NaN when no group has both classes.

    Each group's AUC is its Mann-Whitney statistic (ties count one half, as ``roc_auc_score``), from ranks
    taken within the groups in one pass rather than one ``roc_auc_score`` call per group."""
    frame = pd.DataFrame({"group": groups, "positive": np.asarray(outcome, dtype=float)})
    frame["rank"] = pd.Series(score).groupby(np.asarray(groups)).rank(method="average").to_numpy()
    by_group = frame.assign(positive_rank=frame["rank"] * frame["positive"]).groupby("group")
    positives, size, rank_sum = by_group["positive"].sum(), by_group.size(), by_group["positive_rank"].sum()
    pairs = positives * (size - positives)
    if not pairs.sum():
        return float("nan")
    return float((rank_sum - positives * (positives + 1) / 2).sum() / pairs.sum())


def expected_calibration_error(score: np.ndarray, outcome: np.ndarray, n_bins: int = 10) -> float:
    """Mean |observed rate - mean prediction| over equal-width bins of the prediction, weighted by size."""
    bins = np.minimum((score * n_bins).astype(int), n_bins - 1)
    error = 0.0
    for b in np.unique(bins):
        member = bins == b
        error += member.sum() * abs(outcome[member].mean() - score[member].mean())
    return float(error / len(score))


def policy_signal(probas: dict[str, pd.DataFrame], outcomes: pd.DataFrame, subjects) -> pd.DataFrame:
    """One row per (policy, expert of ``outcomes``): n measured questions, auc, auc_within_subject,
    brier, ece. ``probas`` maps a policy's name to its predictions, indexed like ``outcomes``;
    ``subjects`` gives each row's subject. Unmeasured outcomes (NaN) are left out."""
    subjects = np.asarray(subjects)
    rows = []
    for name, proba in probas.items():
        for expert in outcomes.columns:
            measured = outcomes[expert].notna().to_numpy()
            outcome = outcomes[expert].to_numpy()[measured]
            score = proba[expert].to_numpy(np.float64)[measured]
            both = 0 < outcome.sum() < len(outcome)
            rows.append(
                {
                    "policy": name,
                    "expert": expert,
                    "n": int(measured.sum()),
                    "auc": roc_auc_score(outcome, score) if both else float("nan"),
                    "auc_within_subject": within_group_auc(score, outcome, subjects[measured]),
                    "brier": float(np.mean((score - outcome) ** 2)),
                    "ece": expected_calibration_error(score, outcome),
                }
            )
    return pd.DataFrame(rows, columns=SIGNAL_COLUMNS)


def signal_summary(signal: pd.DataFrame, experts: list[str] | None = None) -> pd.DataFrame:
    """Mean of each measure over the experts (all, or ``experts``), one row per policy."""
    chosen = signal if experts is None else signal[signal["expert"].isin(experts)]
    measures = ["auc", "auc_within_subject", "brier", "ece"]
    return chosen.groupby("policy", sort=False)[measures].mean()
