"""Train/test split by question, seeded and stratified by subject.

Routing is judged on questions whose outcome is known for every expert, so the test split is
drawn from the fully covered rows only; every other recorded row is training data.
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split


def make_splits(scores: pd.DataFrame, test_fraction: float, seed: int) -> pd.DataFrame:
    """Columns subject, idx, split ('train' | 'test'), one row per row of ``scores``."""
    complete = scores.index[scores.notna().all(axis=1)]
    if len(complete) == 0:
        raise ValueError("no question has a score for every expert, so there is nothing to test routing on")
    _, test = train_test_split(
        complete.to_list(),
        test_size=test_fraction,
        random_state=seed,
        stratify=complete.get_level_values("subject"),
    )
    split = pd.Series("train", index=scores.index, name="split")
    split.loc[pd.MultiIndex.from_tuples(test, names=scores.index.names)] = "test"
    return split.reset_index()


def split_index(splits: pd.DataFrame, name: str) -> pd.MultiIndex:
    """The (subject, idx) index of one split."""
    rows = splits[splits["split"] == name]
    return pd.MultiIndex.from_frame(rows[["subject", "idx"]])


def duplicates(questions: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: the questions of a split that have an identical copy (same stem and same choices: the
    same ``qkey``) among the training rows (``test in train``), or among the other rows of their own split
    (``test in test``, ``train in train``). Columns benchmark, split_pair, n, questions (the first split's).
    Counted, not removed: the split stays as drawn."""
    rows = splits.merge(questions[["subject", "idx", "benchmark", "qkey"]], on=["subject", "idx"])
    counts = []
    for benchmark, of in rows.groupby("benchmark", sort=False):
        test, train = of[of["split"] == "test"], of[of["split"] == "train"]
        pairs = {
            "test in train": (test, test["qkey"].isin(train["qkey"])),
            "test in test": (test, test["qkey"].duplicated(keep=False)),
            "train in train": (train, train["qkey"].duplicated(keep=False)),
        }
        counts += [
            {"benchmark": benchmark, "split_pair": pair, "n": int(copied.sum()), "questions": len(first)}
            for pair, (first, copied) in pairs.items()
        ]
    return pd.DataFrame(counts)
