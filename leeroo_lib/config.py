"""Profiles (smoke, cpu, paper) and the project's folders.

A profile is a YAML file in configs/. It says how large a run is and where its outputs go,
so that the small CI run never writes over the results of a full one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
DATA_DIR = ROOT / "data"
PROFILE_ENV = "LEEROO_PROFILE"
DEFAULT_PROFILE = "cpu"

# The files of the data flow (DESIGN.md): name -> (path under a profile's output root, notebook that writes it).
ARTIFACTS = {
    "score_matrix": ("data/score_matrix.parquet", "01_expert_scoring"),
    "splits": ("data/splits/splits.csv", "01_expert_scoring"),
    "universe": ("results/universe.csv", "02_universe"),
    "training_set": ("data/selfplay/training_set.parquet", "03_selfplay"),
    "embeddings": ("data/embeddings/all-MiniLM-L6-v2", "03_selfplay"),
    "orchestrator": ("models/orchestrator", "04_policy"),
    "table1": ("results/table1.csv", "05_mmlu_eval"),
}


@dataclass(frozen=True)
class Profile:
    """One run's settings plus the folders its outputs go to."""

    name: str
    settings: dict = field(repr=False)

    def __getitem__(self, key: str):
        if key not in self.settings:
            raise KeyError(
                f"profile '{self.name}' has no setting '{key}'; add it to {CONFIG_DIR / (self.name + '.yaml')}"
            )
        return self.settings[key]

    def get(self, key: str, default=None):
        return self.settings.get(key, default)

    @property
    def seed(self) -> int:
        return int(self["seed"])

    @property
    def output_root(self) -> Path:
        return (ROOT / self["output_dir"]).resolve()

    def output_path(self, *parts: str) -> Path:
        """A path under this profile's output root; its parent folder is created."""
        path = self.output_root.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


    def artifact(self, name: str) -> Path:
        """Where a file of the data flow goes (its parent folder is created)."""
        return self.output_path(ARTIFACTS[name][0])

    def require(self, name: str) -> Path:
        """Where a file of the data flow is, failing with the notebook to run when it is not there yet."""
        path = self.artifact(name)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: it is written by notebooks/{ARTIFACTS[name][1]}.ipynb with profile "
                f"'{self.name}'; run that notebook first (or `make reproduce PROFILE={self.name}`)"
            )
        return path


def available_profiles() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_profile(name: str | None = None) -> Profile:
    """Read configs/<name>.yaml.

    ``name=None`` takes $LEEROO_PROFILE, else ``cpu``: a notebook's ``profile = None`` parameter
    thus runs small under nbval (LEEROO_PROFILE=smoke) and full under ``make reproduce``.
    A profile that needs a CUDA GPU fails here, before any work, where there is none.
    """
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(
            f"unknown profile '{name}': choose one of {', '.join(available_profiles())} "
            f"(files in {CONFIG_DIR}), e.g. `make reproduce PROFILE=cpu`"
        )
    settings = yaml.safe_load(path.read_text())
    if settings.get("device") == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                f"profile '{name}' needs a CUDA GPU and none is visible to torch "
                f"(torch {torch.__version__}); run with PROFILE=cpu, or install a CUDA build of torch "
                "with `make venv TORCH_SPEC=torch==<version> TORCH_INDEX=<cuda wheel index>`"
            )
    return Profile(name=name, settings=settings)
