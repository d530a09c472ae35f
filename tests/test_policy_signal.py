import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leeroo_lib.evaluation.policy_signal import (
    expected_calibration_error,
    policy_signal,
    signal_summary,
    within_group_auc,
)


def test_a_subject_level_prediction_has_no_signal_within_subjects():
    rng = np.random.default_rng(0)
    subjects = np.repeat(["easy", "hard"], 200)
    outcome = (rng.random(400) < np.where(subjects == "easy", 0.9, 0.3)).astype(float)
    by_subject = np.where(subjects == "easy", 0.9, 0.3)
    assert roc_auc_score(outcome, by_subject) > 0.75  # the subject alone separates much overall
    assert within_group_auc(by_subject, outcome, subjects) == pytest.approx(0.5)
    assert within_group_auc(outcome + 0.1 * by_subject, outcome, subjects) == pytest.approx(1.0)


def test_within_subject_auc_weights_subjects_by_their_pairs():
    # subject a: 1 positive x 1 negative, ranked right (AUC 1); b: 2 x 2, ranked wrong (AUC 0): 4 / 5 pairs wrong
    score = np.array([0.9, 0.1, 0.1, 0.2, 0.8, 0.9])
    outcome = np.array([1, 0, 1, 1, 0, 0], dtype=float)
    groups = np.array(["a", "a", "b", "b", "b", "b"])
    assert within_group_auc(score, outcome, groups) == pytest.approx(1 / 5)
    assert np.isnan(within_group_auc(score[:1], outcome[:1], groups[:1]))


def test_calibration_error_of_a_perfectly_and_a_badly_calibrated_prediction():
    outcome = np.array([1, 0, 1, 0], dtype=float)
    assert expected_calibration_error(np.full(4, 0.5), outcome) == pytest.approx(0.0)
    assert expected_calibration_error(np.full(4, 0.9), outcome) == pytest.approx(0.4)


def test_signal_table_leaves_unmeasured_outcomes_out():
    outcomes = pd.DataFrame({"x": [1, 0, np.nan, 1], "y": [0, 0, 1, 1]}, dtype=float)
    proba = pd.DataFrame({"x": [0.8, 0.2, 0.0, 0.7], "y": [0.1, 0.2, 0.9, 0.8]})
    table = policy_signal({"p": proba}, outcomes, ["s"] * 4)
    assert table.set_index("expert")["n"].to_dict() == {"x": 3, "y": 4}
    assert table["auc"].tolist() == [1.0, 1.0]
    assert signal_summary(table, ["x"]).loc["p", "brier"] == pytest.approx((0.04 + 0.04 + 0.09) / 3)
