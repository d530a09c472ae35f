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
