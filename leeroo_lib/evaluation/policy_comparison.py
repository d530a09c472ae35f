"""Notebook 04's steps: every policy of the profile fitted on the same training rows, predicting the same test
questions, and judged by its signal, its cost-accuracy curve (AIQ) and the profile's goals; then the saved
orchestrators. Each step is one call that returns a table, so the notebook reads as the paper's Section 2.1."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..config import TRAINING_SET_ARTIFACT
from ..routing.orchestrator import Orchestrator
from ..routing.policies import Policy, build, score_targets, training_questions
from ..routing.policies.baselines import OraclePolicy, SubjectPolicy
from .aiq import aiq_table, router_curves
from .evaluate import bootstrap_ci, judged_questions, test_questions
from .goal import goal_evaluation, sequential_orders
from .policy_signal import policy_signal, signal_summary
from .study import Study

SEQUENTIAL = ["leeroo-encoder", "leeroo-stacked"]  # also allocated query by query, against the global rule


def training_sets(study: Study) -> dict[str, pd.DataFrame]:
    """The two training sets of notebook 03 (``full``, ``selfplay``)."""
    return {name: pd.read_parquet(study.profile.require(artifact)) for name, artifact in TRAINING_SET_ARTIFACT.items()}


def served_prices(study: Study) -> pd.Series:
    """The prices of every expert a policy predicts (each benchmark's served experts), in policy output order."""
    return study.prices([e for b in study.profile.benchmarks for e in study.served_on(b)])


def rows_read(study: Study, name: str, benchmark: str, training_set: pd.DataFrame) -> pd.DataFrame:
    """The training questions policy ``name`` reads on ``benchmark``: those with the most measured experts, as
    many as ``policy.rows_cap`` gives it."""
    cap = study.profile.policy.rows_cap(name, benchmark)
    return training_questions(
        study.questions_of(benchmark), training_set[study.served_on(benchmark)], study.splits, cap, study.profile.seed
    )


def test_sets(study: Study) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Per benchmark, the test questions some pool is judged on and every served expert's outcome on them; per
    pool, its judged questions (``policy.test_questions`` at most, seeded)."""
    profile = study.profile
    questions, outcomes, judged = {}, {}, {}
    for b in profile.benchmarks:
        test_all = test_questions(study.questions_of(b), study.splits)
        of = profile.pools_of(b)
        judged |= {
            pool: judged_questions(
                test_all, study.scores, study.served[pool], profile.policy.test_questions, profile.seed
            )
            for pool in of
        }
        questions[b] = (
            pd.concat([judged[pool] for pool in of])
            .drop_duplicates(["subject", "idx"])
            .sort_values(["subject", "idx"], ignore_index=True)
        )
        outcomes[b] = score_targets(questions[b], study.scores[study.served_on(b)])
    return questions, outcomes, judged


def question_counts(
    study: Study, sets: dict[str, pd.DataFrame], test: dict[str, pd.DataFrame], judged: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """How many training rows each set gives a capped policy and the stacked one, how many test questions each
    benchmark and pool has, and how many (subject, idx) keys train and test share (must be 0)."""
    counts = {}
    for b in study.profile.benchmarks:
        counts[b] = {
            **{
                f"training questions, {name} (train_questions)": len(rows_read(study, "mf", b, sets[name]))
                for name in sets
            },
            **{
                f"training questions, {name}": len(rows_read(study, "leeroo-stacked", b, data))
                for name, data in sets.items()
            },
            "test questions": len(test[b]),
            **{f"test questions judged in pool {pool}": len(judged[pool]) for pool in study.profile.pools_of(b)},
            "same (subject, idx) in train and test": len(
                rows_read(study, "leeroo-stacked", b, sets["full"]).merge(test[b], on=["subject", "idx"])
            ),
        }
    return pd.DataFrame(counts).astype("Int64")  # a pool of the other benchmark: <NA>


def fit_policies(study: Study, sets: dict[str, pd.DataFrame]) -> tuple[dict[str, dict[str, Policy]], pd.DataFrame]:
    """Every compared policy of each benchmark fitted on ``policy.train_on``, and the orchestrator's policy on
    the other set too (named ``"<policy> (<set>)"``). Returns the fitted policies per benchmark and a table of
    what each read: its training evaluations and fit seconds. They share the study's embedder."""
    profile, settings = study.profile, study.profile.policy
    other = study.compared_set
    # (benchmark, label) -> (policy name, training set)
    fits = {(b, name): (name, settings.train_on) for b in profile.benchmarks for name in settings.compared_on(b)}
    fits |= {
        (b, f"{name} ({other})"): (name, other) for b, name in settings.orchestrator.items() if b in profile.benchmarks
    }
    policies, trained = {b: {} for b in profile.benchmarks}, []
    for (b, label), (name, trained_on) in fits.items():
        data, rows = sets[trained_on][study.served_on(b)], rows_read(study, name, b, sets[trained_on])
        start = time.perf_counter()
        policy = build(name, settings, device=profile.device, seed=profile.seed, embedder=study.embedder)
        policies[b][label] = policy.fit(rows, data)
        seconds = time.perf_counter() - start
        read = data.loc[pd.MultiIndex.from_frame(rows[["subject", "idx"]])]
        trained.append(
            {
                "benchmark": b,
                "router": label,
                "trained_on": trained_on,
                "training_evaluations": int(read.notna().sum().sum()),
                "fit_seconds": seconds,
            }
        )
    return policies, pd.DataFrame(trained)


def predict(
    study: Study, policies: dict[str, dict[str, Policy]], test: dict[str, pd.DataFrame]
) -> dict[str, dict[str, pd.DataFrame]]:
    """Every fitted policy's predicted chance of success on its benchmark's test questions, beside two that
    read the test outcomes (upper bounds, never routers): the per-question oracle and the subject oracle."""
    seed = study.profile.seed
    probas = {}
    for b, fitted in policies.items():
        truth = study.scores[study.served_on(b)]
        probas[b] = {name: policy.predict_proba(test[b]) for name, policy in fitted.items()}
        probas[b]["oracle"] = OraclePolicy(truth).predict_proba(test[b])
        probas[b]["subject-oracle"] = SubjectPolicy(smoothing=0.0, seed=seed).fit(test[b], truth).predict_proba(test[b])
    return probas


def signal_tables(
    study: Study, probas: dict[str, dict[str, pd.DataFrame]], outcomes: dict[str, pd.DataFrame], test: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per expert and policy (oracles aside), its AUC overall and within subject and its calibration error; and
    their mean over each pool's served experts."""
    signal = pd.concat(
        [
            policy_signal(
                {n: p for n, p in probas[b].items() if "oracle" not in n}, outcomes[b], test[b]["subject"]
            ).assign(benchmark=b)
            for b in probas
        ],
        ignore_index=True,
    )
    summary = pd.concat(
        [signal_summary(signal, members).reset_index().assign(pool=pool) for pool, members in study.served.items()],
        ignore_index=True,
    )
    return signal, summary


def router_table(
    study: Study,
    probas: dict[str, dict[str, pd.DataFrame]],
    outcomes: dict[str, pd.DataFrame],
    trained: pd.DataFrame,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Each router's cost-accuracy curve at ``policy.n_budgets`` budgets per pool (the encoder and stacked
    policies also allocated query by query) and its AIQ. Returns the AIQ table with what each router was
    trained on, and per benchmark its curves (for the plot)."""
    profile, settings = study.profile, study.profile.policy
    costs = served_prices(study)
    curves = {}
    for b in profile.benchmarks:
        of = {pool: study.served[pool] for pool in profile.pools_of(b)}
        sequential = {f"{name}-sequential": probas[b][name] for name in SEQUENTIAL if name in probas[b]}
        curves[b] = pd.concat(
            [
                router_curves(probas[b], outcomes[b], costs, of, settings.n_budgets, mode=settings.mode),
                router_curves(sequential, outcomes[b], costs, of, settings.n_budgets, mode="sequential"),
            ]
        )
    routers = aiq_table(pd.concat(curves.values(), ignore_index=True), costs, study.served)
    routers = routers.assign(benchmark=routers["pool"].map({p: profile.pools[p].benchmark for p in study.served}))
    return routers.merge(trained.drop(columns="fit_seconds"), on=["benchmark", "router"], how="left"), curves


def evaluate_goals(
    study: Study, probas: dict[str, dict[str, pd.DataFrame]], outcomes: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each goal of ``evaluation.goals``: every router against the reference expert at the goal's budget
    (``goals``), and for the paper's routers the gain of allocating query by query over the global rule with
    its bootstrap interval, beside 20 random arrival orders (``allocation``)."""
    profile, settings = study.profile, study.profile.policy
    costs = served_prices(study)
    goals, allocation = [], []
    for goal in profile.evaluation.goals:
        b, members = profile.pools[goal.pool].benchmark, study.served[goal.pool]
        result = goal_evaluation(
            probas[b], outcomes[b], costs, members, reference=goal.reference, budget=goal.budget, seed=profile.seed
        )
        named = f"{goal.pool} @{goal.budget:g} vs {result.reference_name.split('/')[-1]}"
        for name in [n for n in [*SEQUENTIAL, settings.orchestrator[b]] if n in probas[b]]:
            gap = result.correct[name, "sequential"] - result.correct[name, "global"]
            orders = sequential_orders(
                probas[b][name], outcomes[b], costs, members, budget=goal.budget, n_orders=20, seed=profile.seed
            )
            allocation.append(
                {
                    "goal": named,
                    "router": name,
                    "global": result.correct[name, "global"].mean(),
                    "sequential": result.correct[name, "sequential"].mean(),
                    "sequential_minus_global": 100 * gap.mean(),
                    **dict(zip(["ci_low", "ci_high"], 100 * np.array(bootstrap_ci(gap, profile.seed)))),
                    "random_orders_mean": orders.mean(),
                    "random_orders_min": orders.min(),
                    "random_orders_max": orders.max(),
                    "n_orders": len(orders),
                }
            )
        goals.append(
            result.table.assign(
                goal=named,
                pool=goal.pool,
                benchmark=b,
                budget=goal.budget,
                reference=result.reference_name,
                reference_accuracy=result.reference.mean(),
                n_questions=len(result.reference),
            )
        )
    return pd.concat(goals, ignore_index=True), pd.DataFrame(allocation).drop_duplicates(["goal", "router"])


def save_orchestrators(
    study: Study, policies: dict[str, dict[str, Policy]], judged: dict[str, pd.DataFrame]
) -> pd.DataFrame:
    """Save the orchestrator (per benchmark, its ``policy.orchestrator`` trained on ``policy.train_on``) and the
    compared one (the same policies on the other set); check that the saved one reloads and routes as it did.
    Returns how often each goal's pool routes to each expert at the goal's budget."""
    profile, settings = study.profile, study.profile.policy
    costs = served_prices(study)
    held = [policies[b][settings.orchestrator[b]] for b in profile.benchmarks]
    orchestrator = Orchestrator(held, costs, mode=settings.mode, pools=study.served)
    orchestrator.save(profile.artifact("orchestrator"))
    compared = [policies[b][f"{settings.orchestrator[b]} ({study.compared_set})"] for b in profile.benchmarks]
    Orchestrator(compared, costs, mode=settings.mode, pools=study.served).save(
        profile.artifact("compared_orchestrator")
    )
    reloaded = Orchestrator.load(profile.artifact("orchestrator"))
    if reloaded.experts != orchestrator.experts or reloaded.pools != study.served:
        raise RuntimeError("the saved orchestrator reloads with other experts or pools")
    routed = {}
    for goal in profile.evaluation.goals:
        sample = judged[goal.pool].head(50)
        if not reloaded.route(sample, goal.budget, pool=goal.pool).equals(
            orchestrator.route(sample, goal.budget, pool=goal.pool)
        ):
            raise RuntimeError(f"the reloaded orchestrator routes pool {goal.pool} otherwise than the saved one")
        routed[f"{goal.pool} @{goal.budget:g}"] = orchestrator.route(
            judged[goal.pool], goal.budget, pool=goal.pool
        ).value_counts()
    return pd.DataFrame(routed).fillna(0).astype(int)
