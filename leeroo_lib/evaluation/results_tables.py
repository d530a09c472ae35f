"""Notebook 05's steps: the saved orchestrators routing every pool's judged test questions at its budget tiers,
and the tables read from those routes: Table 1, the per-sub-category accuracies of Figure 5, and the strategies
that may ask more than one expert. Each is one call, so the notebook reads as the paper's Section 3."""

from __future__ import annotations

import pandas as pd

from ..data.benchmarks import gold_letters
from ..data.splits import split_index
from ..data.suites import load_letters, paper_rows
from ..routing.orchestrator import Orchestrator
from ..routing.policies.baselines import SubjectPolicy
from . import evaluate
from .question_tokens import TokenEstimate
from .strategies import cheaper_win, evaluate_strategies, strategy_suite
from .study import Study

Routes = dict[tuple[str, float], pd.Series]  # (pool, budget) -> the expert each judged question goes to


def route_tiers(study: Study, orchestrator: Orchestrator, judged: dict[str, pd.DataFrame]) -> Routes:
    """Every pool's judged questions routed at each of its budget tiers (``pools.<pool>.budgets``)."""
    return {
        (pool, budget): routes
        for pool, spec in study.pools.items()
        for budget, routes in orchestrator.route_budgets(judged[pool], spec.budgets, pool=pool).items()
    }


def _pool_scores(study: Study, pool: str, served: list[str], judged: pd.DataFrame) -> pd.DataFrame:
    """The recorded results of a pool's served experts on its judged questions, index (subject, idx)."""
    return study.scores.loc[pd.MultiIndex.from_frame(judged[["subject", "idx"]]), served]


def table1(
    study: Study,
    orchestrators: dict[str, Orchestrator],
    routes: dict[str, Routes],
    judged: dict[str, pd.DataFrame],
    routers: pd.DataFrame,
    tokens: TokenEstimate | None,
) -> pd.DataFrame:
    """Table 1: the paper's own rows; per pool its served experts alone and its oracle; per pool and budget the
    orchestrator of each training set (``orchestrators`` and their ``routes``, keyed by set: the profile's
    ``policy.train_on`` first), with the training evaluations its policy read (notebook 04's ``routers``).
    ``tokens`` prices MMLU-Pro's questions by their own length."""
    profile, seed = study.profile, study.profile.seed
    served = orchestrators[profile.policy.train_on].pools
    scores = {pool: _pool_scores(study, pool, served[pool], judged[pool]) for pool in study.pools}
    priced = {pool: tokens if spec.benchmark == "mmlu_pro" else None for pool, spec in study.pools.items()}
    rows = [paper_rows()]
    for pool in study.pools:
        rows.append(
            evaluate.single_expert_rows(
                scores[pool], study.catalog, seed, pool=pool, questions=judged[pool], tokens=priced[pool]
            )
        )
        rows.append(evaluate.oracle_row(scores[pool], study.catalog, pool, seed))
    for pool, budget in routes[profile.policy.train_on]:
        policy = profile.policy.orchestrator[study.pools[pool].benchmark]
        for trained_on, orchestrator in orchestrators.items():
            own = trained_on == profile.policy.train_on
            suffix = "" if own else f" ({trained_on})"
            row = evaluate.router_row(
                f"leeroo-{pool}{suffix}",
                pool,
                budget,
                routes[trained_on][pool, budget],
                judged[pool],
                scores[pool],
                study.catalog,
                seed,
                orchestrator.mode,
                priced[pool],
            )
            fitted = routers[(routers["pool"] == pool) & (routers["router"] == f"{policy}{suffix}")]
            rows.append(
                row
                | {
                    "kind": "leeroo" if own else "leeroo-compared",
                    "trained_on": trained_on,
                    "training_evaluations": fitted["training_evaluations"].item(),
                }
            )
    return evaluate.table1(rows)


def subcategory_table(study: Study, orchestrator: Orchestrator, judged: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Figure 5's data: per benchmark, over the test questions every highlighted pool of it is judged on, the
    best single served expert of the first of them against Leeroo at each highlighted (pool, budget), per
    sub-category with a bootstrap interval."""
    test, served, tables = study.test, orchestrator.pools, []
    for benchmark in study.profile.benchmarks:
        highlight = study.profile.evaluation.highlight
        shown = {pool: budget for pool, budget in highlight.items() if study.pools[pool].benchmark == benchmark}
        keys = set.intersection(*[set(zip(judged[p]["subject"], judged[p]["idx"])) for p in shown])
        common = test[[key in keys for key in zip(test["subject"], test["idx"])]].reset_index(drop=True)
        singles = evaluate.score_targets(common, study.scores[served[next(iter(shown))]])
        best = singles.mean().idxmax()
        systems = {best.split("/")[-1]: singles[best].to_numpy()}
        for pool, budget in shown.items():
            routed = orchestrator.route(common, budget, pool=pool)
            systems[f"leeroo-{pool} @{budget:g}"] = evaluate.routed_outcomes(routed, common, study.scores[served[pool]])
        tables.append(evaluate.subcategory_accuracy(systems, common, study.profile.seed).assign(benchmark=benchmark))
    return pd.concat(tables)


def strategy_tables(
    study: Study, served: dict[str, list[str]], judged: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each ``evaluation.strategies`` pool's strategies that may ask several experts (votes and cascades, fitted
    on the training split's recorded letters, a subject policy ordering the experts), on its judged questions;
    and per price share of the reference expert, the most accurate strategy chosen on training questions."""
    seed, train, rows, wins = study.profile.seed, split_index(study.splits, "train"), [], {}
    for settings in study.profile.evaluation.strategies:
        members = served[settings.pool]
        of = study.questions[study.questions["benchmark"] == study.pools[settings.pool].benchmark]
        keys = pd.MultiIndex.from_frame(of[["subject", "idx"]])
        suite = {e.suite for e in study.catalog if e.name in members}.pop()  # the letter suite of its experts
        letters, gold = load_letters(suite, of)[members], gold_letters(of)
        letters = letters[study.scores.reindex(letters.index)[members].notna().all(axis=1).to_numpy()]
        proba = SubjectPolicy(seed=seed).fit(of[keys.isin(train)], study.scores[members]).predict_proba(of)
        prices = study.costs[members]
        strategies = strategy_suite(letters, gold, prices, proba.set_axis(keys), train, settings.n_budgets, seed)
        test_letters = letters.loc[pd.MultiIndex.from_frame(judged[settings.pool][["subject", "idx"]])]
        rows.append(evaluate_strategies(strategies, test_letters, gold, settings.pool, seed))
        train_letters = letters.loc[letters.index.isin(train)]
        wins[settings.pool] = cheaper_win(
            strategies, train_letters, test_letters, gold, prices, settings.reference, seed, settings.price_shares
        )
    return pd.concat(rows, ignore_index=True), pd.concat(wins, names=["pool"]).droplevel(1).reset_index()
