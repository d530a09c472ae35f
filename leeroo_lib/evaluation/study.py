"""What every notebook starts from: a run's profile and, read when first used, its questions, score matrix,
splits, catalog, prices and served experts. ``load_study(profile)`` is the notebooks' one line of setup; each
input is read once, where a notebook first asks for it, so notebook 02 can run before the universe exists."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import pandas as pd

from ..config import TRAINING_SETS, Pool, Profile, load_profile
from ..data.benchmarks import load_questions
from ..data.embeddings import CachedSentenceEmbedder
from ..experts.catalog import Expert, expert_costs, get_experts, load_catalog
from ..routing.pools import served_experts, served_union
from .evaluate import judged_questions, test_questions


@dataclass(eq=False)
class Study:
    """One profile's inputs, each read once (``cached_property``)."""

    profile: Profile

    @property
    def pools(self) -> dict[str, Pool]:
        """The profile's pools: candidates, rule and budget tiers (notebook 02 chooses who each serves)."""
        return self.profile.pools

    @property
    def compared_set(self) -> str:
        """The training set the saved orchestrator is compared with: the one that is not ``policy.train_on``."""
        return next(name for name in TRAINING_SETS if name != self.profile.policy.train_on)

    @cached_property
    def catalog(self) -> list[Expert]:
        return load_catalog(self.profile)

    @cached_property
    def costs(self) -> pd.Series:
        """Every catalog expert's price, USD per 1M tokens."""
        return expert_costs(self.catalog)

    def prices(self, experts: list[str]) -> pd.Series:
        """The prices of ``experts``, in their order."""
        return expert_costs(get_experts(experts, self.catalog))

    @cached_property
    def questions(self) -> pd.DataFrame:
        """Every benchmark's questions in one frame (column ``benchmark``)."""
        return load_questions(self.profile.benchmarks)

    @cache  # noqa: B019 - a study lives as long as its notebook
    def questions_of(self, benchmark: str) -> pd.DataFrame:
        """One benchmark's questions, indexed from 0."""
        return load_questions(benchmark)

    @cached_property
    def scores(self) -> pd.DataFrame:
        """The score matrix of notebook 01: (subject, idx) by expert, 1 / 0 / NaN (not measured)."""
        return pd.read_parquet(self.profile.require("score_matrix"))

    @cached_property
    def splits(self) -> pd.DataFrame:
        return pd.read_csv(self.profile.require("splits"))

    @cached_property
    def embedder(self) -> CachedSentenceEmbedder:
        """The frozen sentence encoder every policy on embeddings shares, its cache in the run's folder: each
        question is embedded once per run."""
        return CachedSentenceEmbedder(
            self.profile.artifact("embeddings"), max_length=self.profile.policy.embedding_max_length
        )

    @cached_property
    def served(self) -> dict[str, list[str]]:
        """Per pool, the experts its universe serves (notebook 02), in the order Algorithm 1 added them."""
        return served_experts(pd.read_csv(self.profile.require("universe")))

    def served_on(self, benchmark: str) -> list[str]:
        """The union of the experts a benchmark's pools serve: one policy output each."""
        return served_union(self.served, self.profile.pools_of(benchmark))

    @cached_property
    def test(self) -> pd.DataFrame:
        """Every benchmark's test-split questions, in (subject, idx) order."""
        return test_questions(self.questions, self.splits)

    def judged(self, served: dict[str, list[str]], limit: int | None) -> dict[str, pd.DataFrame]:
        """Per pool, the test questions of its benchmark where every expert it serves was measured, at most
        ``limit`` of them (seeded): what each pool is judged on."""
        return {
            pool: judged_questions(
                self.test[self.test["benchmark"] == self.pools[pool].benchmark],
                self.scores,
                members,
                limit,
                self.profile.seed,
            )
            for pool, members in served.items()
        }


def load_study(profile: str | None = None) -> Study:
    """The study of profile ``profile`` (smoke | cpu | paper; None reads ``$LEEROO_PROFILE``, else cpu)."""
    return Study(load_profile(profile))
