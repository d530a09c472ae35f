"""Which cheap policy to route with, chosen inside the training split only: 5-fold cross-validation
over every training question (folds grouped by question text), each policy fitted on four folds over
every served expert of the goal's benchmark (as notebook 04 fits the orchestrator's) and judged on the fifth,
in the pool of one of the profile's goals (``evaluation.goals``, the first unless ``--goal`` says): the
per-question signal (mean over the
pool's experts of the AUC overall and within subject) and the accuracy at the goal's budget against the
reference expert on the held-out rows every expert of the pool was measured on (both allocation modes,
paired bootstrap interval). The test split is never read. ``--train-on selfplay`` fits each policy on only what
the self-play loop paid for on the four folds (notebook 03), judged on the fifth with every recorded outcome: how
the profile's ``policy.train_on`` is chosen. Printed, and written to
``results/bench_policy_cv_<pool>_<budget>_<training set>.csv``.

    python benchmarks/policy_cv.py [--profile cpu] [--folds 5] [--goal 0] [--train-on full|selfplay]

Reads what notebooks 01-03 wrote for the profile (score matrix, splits, universe, training set, the
embeddings cache). The encoder policy is left out: on 2 CPU cores one fit costs minutes, five of them
about half an hour (a single held-out fold is in the README).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from leeroo_lib.config import TRAINING_SET_ARTIFACT, TRAINING_SETS, load_profile
from leeroo_lib.data.benchmarks import load_questions
from leeroo_lib.data.embeddings import CachedSentenceEmbedder
from leeroo_lib.evaluation.goal import goal_evaluation
from leeroo_lib.evaluation.policy_signal import policy_signal
from leeroo_lib.experts.catalog import expert_costs, get_experts, load_catalog
from leeroo_lib.routing.policies import build, score_targets, training_questions
from leeroo_lib.routing.pools import served_experts, served_union

# by their names in config.PolicySettings.KINDS; the logistic probe is the stacked policy's, alone
CANDIDATES = ["best-single-expert", "subject-best", "knn", "mf", "logistic-probe", "leeroo-stacked"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--goal", type=int, default=0, help="which of the profile's evaluation.goals")
    parser.add_argument("--train-on", choices=TRAINING_SETS, help="the policies' training set (default: the profile's)")
    args = parser.parse_args()

    cfg = load_profile(args.profile)
    goal = cfg.evaluation.goals[args.goal]
    benchmark = cfg.pools[goal.pool].benchmark
    pools = served_experts(pd.read_csv(cfg.require("universe")))
    members = pools[goal.pool]
    union = served_union(pools, cfg.pools_of(benchmark))  # what notebook 04 fits the benchmark's policy on
    costs = expert_costs(get_experts(members, load_catalog(cfg)))
    splits = pd.read_csv(cfg.require("splits"))
    training_set = pd.read_parquet(cfg.require("training_set"))[union]
    train_on = args.train_on or cfg.policy.train_on
    fitted_on = pd.read_parquet(cfg.require(TRAINING_SET_ARTIFACT[train_on])).reindex(columns=union)
    questions = training_questions(load_questions(benchmark), training_set, splits, None, cfg.seed).reset_index(
        drop=True
    )
    embedder = CachedSentenceEmbedder(cfg.artifact("embeddings"), max_length=cfg.policy.embedding_max_length)
    embedder.embed(questions)
    folds = list(GroupKFold(args.folds, shuffle=True, random_state=cfg.seed).split(questions, groups=questions["qkey"]))
    outcomes = score_targets(questions, training_set[members])
    judged = outcomes.notna().all(axis=1).to_numpy()
    print(
        f"{args.profile}: {len(questions):,} training questions, {args.folds} folds; pool {goal.pool} "
        f"({len(members)} experts), {judged.sum():,} rows with all of them measured; budget {goal.budget}, "
        f"reference {goal.reference or 'the best single expert it affords'}; policies fitted on {train_on}"
    )
    rows = []
    for name in CANDIDATES:
        start = time.perf_counter()
        proba = pd.DataFrame(np.nan, index=questions.index, columns=members)
        signal = []
        for fit_rows, held_out in folds:
            policy = build(name, cfg.policy, device=cfg.device, seed=cfg.seed, embedder=embedder)
            part = questions.iloc[fit_rows]
            policy.fit(part[pd.MultiIndex.from_frame(part[["subject", "idx"]]).isin(fitted_on.index)], fitted_on)
            part = questions.iloc[held_out]
            proba.iloc[held_out] = policy.predict_proba(part)[members].to_numpy()
            signal.append(policy_signal({name: proba.iloc[held_out]}, outcomes.iloc[held_out], part["subject"]))
        signal = pd.concat(signal).groupby("expert")[["auc", "auc_within_subject"]].mean().mean()
        row = {
            "policy": name,
            "trained_on": train_on,
            **signal.round(4).to_dict(),
            "seconds": round(time.perf_counter() - start, 1),
        }
        result = goal_evaluation(
            {name: proba}, outcomes, costs, members, reference=goal.reference, budget=goal.budget, seed=cfg.seed
        )
        for _, goal_row in result.table.iterrows():
            row[f"{goal_row['mode']} accuracy"] = round(goal_row["accuracy"], 4)
            row[f"{goal_row['mode']} points over reference [CI]"] = (
                f"{goal_row['points over reference']:+.1f} [{goal_row['CI low']:+.1f}, {goal_row['CI high']:+.1f}]"
            )
        rows.append(row)
        print(pd.Series(row).to_string(), "\n", flush=True)
    print(f"{result.reference_name} alone on those rows: {result.reference.mean():.4f}")
    table = pd.DataFrame(rows).assign(
        pool=goal.pool,
        budget=goal.budget,
        reference=result.reference_name,
        reference_accuracy=round(result.reference.mean(), 4),
        judged_rows=int(judged.sum()),
    )
    print(table.set_index("policy").to_string())
    path = cfg.output_path("results", f"bench_policy_cv_{goal.pool}_{goal.budget:g}_{train_on}.csv")
    table.to_csv(path, index=False)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
