import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.data import files, suites
from leeroo_lib.data.benchmarks import gold_letters
from leeroo_lib.data.suites import load_letter_scores, load_letters

# data/PROVENANCE.md, "Accuracy over these rows", to three decimals.
PROVENANCE_ACCURACY = {
    "anthropic/claude-3-opus-20240229 (HELM)": 0.851,
    "openai/gpt-4o-2024-05-13 (HELM)": 0.849,
    "openai/gpt-4-0613 (HELM)": 0.841,
    "openai/gpt-4-1106-preview (HELM)": 0.810,
    "google/gemini-1.5-pro-preview-0409 (HELM)": 0.809,
    "meta-llama/Meta-Llama-3-70B (HELM)": 0.788,
    "google/gemini-1.5-flash-preview-0514 (HELM)": 0.775,
    "mistralai/Mixtral-8x22B-v0.1 (HELM)": 0.774,
}
# Half a unit of the third decimal, plus one question (1/13,015): gpt-4-0613 and Llama-3-70B land at
# 0.8405 and 0.7875 with load_mmlu()'s gold answers, a question away from PROVENANCE's rounding.
TOLERANCE = 0.0006


@pytest.fixture(scope="module")
def helm_letters(questions):
    return load_letters("helm", questions)


@pytest.fixture(scope="module")
def helm_scores(questions):
    return load_letter_scores("helm", questions)


def _rewrite(data_dir, edit):
    """Apply ``edit`` to the CSV text of the HELM file in a data copy and re-sign it in SHA256SUMS."""
    path = data_dir / suites.HELM_PREDICTIONS_FILE
    path.write_bytes(gzip.compress(edit(gzip.decompress(path.read_bytes()))))
    sums = data_dir / files.CHECKSUMS_FILE
    lines = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}" if line.endswith(path.name) else line
        for line in sums.read_text().splitlines()
    ]
    sums.write_text("\n".join(lines) + "\n")


def test_letters_cover_helm_rows_with_letters_only(helm_letters, recorded):
    catalog = pd.read_csv(files.DATA_DIR / "experts_helm.csv")["expert"]
    assert helm_letters.shape == (13_015, 8)
    assert list(helm_letters.index.names) == ["subject", "idx"]
    assert set(helm_letters.columns) == set(catalog) and all(c.endswith(" (HELM)") for c in catalog)
    assert set(helm_letters.stack().dropna()) == set("ABCD")
    assert helm_letters["openai/gpt-4-1106-preview (HELM)"].isna().sum() == 697
    assert helm_letters.index.isin(recorded.index).all()
    assert len(recorded.index.difference(helm_letters.index)) == 27


def test_accuracies_match_provenance(helm_letters, helm_scores):
    assert helm_scores.index.equals(helm_letters.index)
    assert set(np.unique(helm_scores.to_numpy())) == {0.0, 1.0}
    assert (helm_scores.to_numpy()[helm_letters.isna().to_numpy()] == 0).all()  # an empty letter is wrong
    for expert, accuracy in PROVENANCE_ACCURACY.items():
        assert helm_scores[expert].mean() == pytest.approx(accuracy, abs=TOLERANCE), expert
    assert helm_scores.max(axis=1).mean() == pytest.approx(0.957, abs=TOLERANCE)


def test_scores_are_letters_against_gold(questions, helm_letters, helm_scores):
    gold = gold_letters(questions).reindex(helm_letters.index)
    row = helm_letters.index[0]
    expected = [float(helm_letters.loc[row, e] == gold[row]) for e in helm_letters.columns]
    assert helm_scores.loc[row].tolist() == expected


def test_helm_gpt4_1106_agrees_with_routellm_column(helm_scores, recorded):
    """PROVENANCE: the two scorings of GPT-4-1106 correlate at 0.88 (accuracy 0.810 vs 0.806)."""
    both = helm_scores.join(recorded, how="inner")
    helm, routellm = both["openai/gpt-4-1106-preview (HELM)"], both["openai/gpt-4-1106-preview"]
    assert np.corrcoef(helm, routellm)[0, 1] == pytest.approx(0.88, abs=0.01)


def test_letter_outside_a_to_d_is_refused(questions, data_copy):
    _rewrite(data_copy, lambda text: text.replace(b",C,C,C,,C,C,D,C", b",C,E,C,,C,C,D,C", 1))
    with pytest.raises(ValueError, match=r"A, B, C, D or '' \(no letter\), found \['E'\]"):
        load_letters("helm", questions, data_copy)


def test_rows_that_do_not_join_are_refused(questions, data_copy):
    _rewrite(data_copy, lambda text: text.replace(b"abstract_algebra,1,", b"abstract_algebra,0,", 1))
    with pytest.raises(ValueError, match="1 helm rows do not join to their question"):
        load_letter_scores("helm", questions, data_copy)


def test_corrupt_helm_file_names_file_and_fix(questions, data_copy):
    path = data_copy / suites.HELM_PREDICTIONS_FILE
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"corrupt: .*mmlu_helm_predictions.csv.gz.*git checkout"):
        load_letters("helm", questions, data_copy)
