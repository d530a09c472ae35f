"""The expert catalog: who can answer, at what price (data/experts.csv)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .data import verify_data_file
from .scoring import protocol

EXPERTS_FILE = "experts.csv"


@dataclass(frozen=True)
class Expert:
    """One LLM expert as the paper prices it: serving cost in USD per 1M tokens."""

    name: str
    params_b: float | None
    size_class: str
    cost_per_1m_usd: float
    access: str
    protocol: str
    source: str


def load_experts(data_dir: Path | None = None) -> list[Expert]:
    df = pd.read_csv(verify_data_file(EXPERTS_FILE, data_dir))
    return [
        Expert(
            name=r.expert,
            params_b=None if math.isnan(r.params_b) else float(r.params_b),
            size_class=r.size_class,
            cost_per_1m_usd=float(r.cost_per_1m_usd),
            access=r.access,
            protocol=r.protocol,
            source=r.source,
        )
        for r in df.itertuples()
    ]


def get_experts(names, catalog: list[Expert] | None = None) -> list[Expert]:
    """The catalog entries for ``names``, in that order; an unknown name is an error that lists the known ones."""
    catalog = load_experts() if catalog is None else catalog
    by_name = {e.name: e for e in catalog}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(
            f"unknown expert(s) {unknown}: the catalog (data/experts.csv) has {sorted(by_name)}"
        )
    return [by_name[n] for n in names]


def expert_costs(experts: list[Expert]) -> pd.Series:
    """Cost per 1M tokens, indexed by expert name."""
    return pd.Series({e.name: e.cost_per_1m_usd for e in experts}, name="cost_per_1m_usd")


def accuracy_table(scores: pd.DataFrame, catalog: list[Expert]) -> pd.DataFrame:
    """Per expert: accuracy over the questions it was measured on, how many, its cost and protocol."""
    experts = get_experts(list(scores.columns), catalog)
    return pd.DataFrame({
        "expert": [e.name for e in experts],
        "size_class": [e.size_class for e in experts],
        "cost_per_1m_usd": [e.cost_per_1m_usd for e in experts],
        "accuracy": scores.mean().values,
        "n_questions": scores.notna().sum().values,
        "protocol": [e.protocol for e in experts],
    }).sort_values("cost_per_1m_usd", kind="stable").reset_index(drop=True)


POOLS = {
    "open": lambda e: e.access == "open",  # the paper's Leeroo (opensource)
    "mix": lambda e: True,                 # Leeroo (mix): GPT-4 in the pool as well
}


def pool_experts(pool: str, catalog: list[Expert] | None = None) -> list[str]:
    """Names of the recorded experts in a routing pool ('open' or 'mix')."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool '{pool}': use one of {sorted(POOLS)}")
    catalog = load_experts() if catalog is None else catalog
    return [e.name for e in catalog if POOLS[pool](e)]


def live_experts(cfg) -> list[Expert]:
    """Catalog entries of the profile's live experts (scored in notebook 01 through lm-eval).

    Their price and size class come from the profile's ``scoring.live_experts`` entries; they sit in
    the tables beside the recorded experts but never in the routing pools, which are data/experts.csv.
    """
    settings = cfg["scoring"]
    scored_as = f"live: {protocol(settings['num_fewshot'], settings['task'])}"
    return [
        Expert(name=e["name"], params_b=e.get("params_b"), size_class=e["size_class"],
               cost_per_1m_usd=float(e["cost_per_1m_usd"]), access="open", protocol=scored_as, source=e["source"])
        for e in settings["live_experts"]
    ]
