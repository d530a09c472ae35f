"""The expert catalog: who can answer, at what price.

One catalog per run: the recorded suites (data/experts.csv, the 13 experts of the paper's era, and
data/experts_helm.csv, eight frontier models scored by HELM, both on MMLU; data/experts_mmlu_pro.csv,
29 models on MMLU-Pro) plus the profile's live experts, scored in notebook 01. Every pool draws its
candidates from it (``leeroo_lib.routing.pools``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import Profile
from ..data.files import verify_data_file

# Recorded suites: name -> catalog file under data/.
SUITES = {"recorded": "experts.csv", "helm": "experts_helm.csv", "mmlu_pro": "experts_mmlu_pro.csv"}
LIVE_SUITE = "live"  # the profile's own experts, scored on MMLU in notebook 01
# what each suite answered
SUITE_BENCHMARK = {"recorded": "mmlu", "helm": "mmlu", "mmlu_pro": "mmlu_pro", LIVE_SUITE: "mmlu"}


@dataclass(frozen=True)
class Expert:
    """One LLM expert as the paper prices it: serving cost in USD per 1M tokens (the mean of its input
    and output prices where the suite gives them: the MMLU-Pro suite, whose answers' lengths are known)."""

    name: str
    params_b: float | None
    size_class: str
    cost_per_1m_usd: float
    access: str
    protocol: str
    source: str
    suite: str = "recorded"
    benchmark: str = "mmlu"  # the benchmark it answered (data.benchmarks.BENCHMARKS)
    input_usd_per_1m: float | None = None
    output_usd_per_1m: float | None = None


def expert_label(name) -> str:
    """An expert's name in a table, a figure or a sentence: without its organisation and its suite's suffix."""
    return str(name).split("/")[-1].removesuffix(" (MMLU-Pro)").removesuffix(" (HELM)")


def load_experts(data_dir: Path | None = None, suite: str = "recorded") -> list[Expert]:
    """The experts of one recorded suite (a key of ``SUITES``)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite '{suite}': the recorded suites are {sorted(SUITES)} (and '{LIVE_SUITE}')")
    df = pd.read_csv(verify_data_file(SUITES[suite], data_dir))
    return [
        Expert(
            name=r.expert,
            params_b=None if math.isnan(r.params_b) else float(r.params_b),
            size_class=r.size_class,
            cost_per_1m_usd=float(r.cost_per_1m_usd),
            access=r.access,
            protocol=r.protocol,
            source=r.source,
            suite=suite,
            benchmark=SUITE_BENCHMARK[suite],
            input_usd_per_1m=getattr(r, "input_usd_per_1m", None),
            output_usd_per_1m=getattr(r, "output_usd_per_1m", None),
        )
        for r in df.itertuples()
    ]


def load_catalog(profile: Profile | None = None, data_dir: Path | None = None) -> list[Expert]:
    """Every recorded suite, or, given a profile, those of its ``benchmarks`` plus its live
    experts (scored on MMLU); names are unique."""
    suites = [s for s in SUITES if profile is None or SUITE_BENCHMARK[s] in profile.benchmarks]
    catalog = [e for suite in suites for e in load_experts(data_dir, suite)]
    if profile is not None:
        catalog += live_experts(profile)
    names = pd.Series([e.name for e in catalog])
    if names.duplicated().any():
        raise ValueError(
            f"expert name(s) {sorted(set(names[names.duplicated()]))} appear twice in the catalog; rename the "
            "live expert in the profile's scoring.live_experts (names must be unique across suites)"
        )
    return catalog


def get_experts(names, catalog: list[Expert] | None = None) -> list[Expert]:
    """The catalog entries for ``names``, in that order; an unknown name is an error that lists the known ones."""
    catalog = load_catalog() if catalog is None else catalog
    by_name = {e.name: e for e in catalog}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown expert(s) {unknown}: the catalog ({', '.join(f'data/{f}' for f in SUITES.values())} and "
            f"the profile's live experts) has {sorted(by_name)}"
        )
    return [by_name[n] for n in names]


def expert_costs(experts: list[Expert]) -> pd.Series:
    """Cost per 1M tokens, indexed by expert name."""
    return pd.Series({e.name: e.cost_per_1m_usd for e in experts}, name="cost_per_1m_usd")


def accuracy_table(scores: pd.DataFrame, catalog: list[Expert]) -> pd.DataFrame:
    """Per expert: accuracy over the questions it was measured on, how many, its cost and protocol."""
    experts = get_experts(list(scores.columns), catalog)
    return (
        pd.DataFrame(
            {
                "expert": [e.name for e in experts],
                "benchmark": [e.benchmark for e in experts],
                "size_class": [e.size_class for e in experts],
                "cost_per_1m_usd": [e.cost_per_1m_usd for e in experts],
                "accuracy": scores.mean().values,
                "n_questions": scores.notna().sum().values,
                "protocol": [e.protocol for e in experts],
            }
        )
        .sort_values("cost_per_1m_usd", kind="stable")
        .reset_index(drop=True)
    )


def live_experts(profile: Profile) -> list[Expert]:
    """Catalog entries of the profile's live experts (scored in notebook 01 through lm-eval).

    Their price and size class come from the profile's ``scoring.live_experts`` entries; like any
    expert they enter a pool when the pool names them as candidates and the universe serves them.
    """
    settings = profile.scoring
    return [
        Expert(
            name=e.name,
            params_b=e.params_b,
            size_class=e.size_class,
            cost_per_1m_usd=float(e.cost_per_1m_usd),
            access=e.access,
            protocol=f"live: {protocol(settings.num_fewshot, settings.task, e.method)}",
            source=e.source,
            suite=LIVE_SUITE,
        )
        for e in settings.live_experts
    ]


METHODS = ("loglikelihood", "generative")


def protocol(num_fewshot: int, task: str, method: str = "loglikelihood") -> str:
    """How a live expert was scored (``task``: 'local' or 'mmlu'), stored with every row and shown in the tables."""
    shots = {"local": "shots: first test questions of the subject", "mmlu": "shots: MMLU dev split"}
    if task not in shots:
        raise ValueError(f"scoring task must be 'local' or 'mmlu', not '{task}'")
    if method not in METHODS:
        raise ValueError(f"scoring method must be one of {METHODS}, not '{method}'")
    if method == "generative" and task != "local":
        raise ValueError("generative scoring reads the project's own question file: set scoring.task to 'local'")
    scored_by = {"loglikelihood": "loglikelihood", "generative": "generative, letter parsed"}[method]
    return f"lm-eval {num_fewshot}-shot {scored_by} ({task} task, {shots[task]})"
