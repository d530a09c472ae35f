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

    leeroo cv [--profile cpu] [--folds 5] [--goal 0] [--train-on full|selfplay]     (make cv: both training sets)

Reads what notebooks 01-03 wrote for the profile (score matrix, splits, universe, training set, the
embeddings cache). The encoder policy is left out: on 2 CPU cores one fit costs minutes, five of them
about half an hour (a single held-out fold is in the README).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold
from tqdm.auto import tqdm

from ..config import TRAINING_SET_ARTIFACT, Profile
from ..routing.policies import build, score_targets, training_questions
from .goal import goal_evaluation
from .policy_signal import policy_signal
from .study import Study

# by the names their classes register (routing.policies.register_policy); the logistic probe is the stacked
# policy's, alone
CANDIDATES = ["best-single-expert", "subject-best", "knn", "mf", "logistic-probe", "leeroo-stacked"]


def cross_validate(profile: Profile, folds: int = 5, goal_number: int = 0, train_on: str | None = None) -> Path:
    """Cross-validate ``CANDIDATES`` in ``folds`` folds on goal ``goal_number`` of the profile's
    ``evaluation.goals``, each policy fitted on ``train_on`` (default: the profile's ``policy.train_on``);
    prints the table and returns the CSV it wrote."""
    goals = profile.evaluation.goals
    if folds < 2:
        raise ValueError(f"folds must be 2 or more, got {folds}")
    if not 0 <= goal_number < len(goals):
        raise ValueError(f"goal {goal_number} is not one of the profile's evaluation.goals (0 to {len(goals) - 1})")
    goal, study = goals[goal_number], Study(profile)
    benchmark = profile.pools[goal.pool].benchmark
    members = study.served[goal.pool]
    union = study.served_on(benchmark)  # what notebook 04 fits the benchmark's policy on
    costs = study.prices(members)
    training_set = pd.read_parquet(profile.require("training_set"))[union]
    train_on = train_on or profile.policy.train_on
    fitted_on = pd.read_parquet(profile.require(TRAINING_SET_ARTIFACT[train_on])).reindex(columns=union)
    questions = training_questions(
        study.questions_of(benchmark), training_set, study.splits, None, profile.seed
    ).reset_index(drop=True)
    embedder = study.embedder
    embedder.embed(questions)
    splitter = GroupKFold(folds, shuffle=True, random_state=profile.seed)
    parts = list(splitter.split(questions, groups=questions["qkey"]))
    outcomes = score_targets(questions, training_set[members])
    judged = outcomes.notna().all(axis=1).to_numpy()
    print(
        f"{profile.name}: {len(questions):,} training questions, {folds} folds; pool {goal.pool} "
        f"({len(members)} experts), {judged.sum():,} rows with all of them measured; budget {goal.budget}, "
        f"reference {goal.reference or 'the best single expert it affords'}; policies fitted on {train_on}"
    )
    rows = []
    for name in tqdm(CANDIDATES, desc="policies"):
        start = time.perf_counter()
        proba = pd.DataFrame(np.nan, index=questions.index, columns=members)
        signal = []
        for fit_rows, held_out in parts:
            policy = build(name, profile.policy, device=profile.device, seed=profile.seed, embedder=embedder)
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
            {name: proba}, outcomes, costs, members, reference=goal.reference, budget=goal.budget, seed=profile.seed
        )
        for _, goal_row in result.table.iterrows():
            row[f"{goal_row['mode']} accuracy"] = round(goal_row["accuracy"], 4)
            row[f"{goal_row['mode']} points over reference [CI]"] = (
                f"{goal_row['points over reference']:+.1f} [{goal_row['CI low']:+.1f}, {goal_row['CI high']:+.1f}]"
            )
        rows.append(row)
    print(f"{result.reference_name} alone on those rows: {result.reference.mean():.4f}")
    table = pd.DataFrame(rows).assign(
        pool=goal.pool,
        budget=goal.budget,
        reference=result.reference_name,
        reference_accuracy=round(result.reference.mean(), 4),
        judged_rows=int(judged.sum()),
    )
    print(table.set_index("policy").to_string())
    path = profile.output_path("results", f"bench_policy_cv_{goal.pool}_{goal.budget:g}_{train_on}.csv")
    table.to_csv(path, index=False)
    return path
