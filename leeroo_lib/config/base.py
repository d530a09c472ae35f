"""What every part of the configuration shares: the project's folders, the files that pass from notebook to
notebook, the value types of the schemas and their strict block."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
ENDPOINTS_DIR = CONFIG_DIR / "endpoints"
DATA_DIR = ROOT / "data"
PROFILE_ENV = "LEEROO_PROFILE"
OUTPUT_DIR_ENV = "LEEROO_OUTPUT_DIR"  # set: every output of the run goes there instead of the profile's output_dir
DEFAULT_PROFILE = "cpu"

# The files that pass from notebook to notebook: name -> (path under a profile's output root, notebook that writes it).
ARTIFACTS = {
    "score_matrix": ("data/score_matrix.parquet", "01_expert_scoring"),
    "splits": ("data/splits/splits.csv", "01_expert_scoring"),
    "universe": ("results/universe.csv", "02_universe"),
    "training_set": ("data/selfplay/training_set.parquet", "03_selfplay"),
    "selfplay_training_set": ("data/selfplay/selfplay_training_set.parquet", "03_selfplay"),
    "embeddings": ("data/embeddings/all-MiniLM-L6-v2", "03_selfplay"),
    "orchestrator": ("models/orchestrator", "04_policy"),
    # the saved orchestrator's policies fitted on the other training set (policy.train_on), for Table 1
    "compared_orchestrator": ("models/orchestrator_compared", "04_policy"),
    "table1": ("results/table1.csv", "05_mmlu_eval"),
}

Count = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0, le=1)]
Price = Annotated[float, Field(ge=0)]  # USD per 1M tokens
Benchmark = Literal["mmlu", "mmlu_pro"]  # data.benchmarks.BENCHMARKS
# The orchestrator's training data: what the self-play loop paid for, or every recorded outcome (the upper bound)
TrainingSet = Literal["selfplay", "full"]
TRAINING_SETS: tuple[str, ...] = typing.get_args(TrainingSet)
TRAINING_SET_ARTIFACT = {"selfplay": "selfplay_training_set", "full": "training_set"}  # the ARTIFACTS holding each


class _Block(BaseModel):
    """A block of a profile: every key declared, no other key accepted, no silent conversion. A key
    whose default is None may be left out (the code's own default applies); given, it must have its type."""

    model_config = ConfigDict(extra="forbid", strict=True)
