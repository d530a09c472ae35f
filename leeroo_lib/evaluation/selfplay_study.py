"""What the replayed self-play loop buys, measured (notebook 03): learning curves of four strategies over
several seeds with an interval, their goals against the best single expert and full information, the
evaluation budget of the self-play training set chosen on the training split, and a new expert joining
mid-loop. Every loop replays recorded outcomes of real training questions; only test questions judge it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from ..config import SelfPlay, SelfPlayCurve, SelfPlayTraining
from ..data.splits import split_index
from ..routing.orchestrator import Orchestrator, routed_accuracy
from ..routing.policies.baselines import SubjectPolicy
from ..routing.pools import served_union
from ..routing.selfplay import GREEDY, STRATEGIES, ReplayEvaluator, SelfPlayLoop, training_loop, universe_by_rule
from .study import Study

CURVE_COLUMNS = ["benchmark", "pool", "budget", "strategy", "seed", "round", "evaluations", "accuracy"]
NEW_EXPERT_COLUMNS = [
    "benchmark",
    "pool",
    "rule",
    "new_expert",
    "arrives_round",
    "full_information_decision",
    "loop_decision",
    "matches",
    "new_expert_evaluations",
    "full_scoring_evaluations",
    "accuracy_before",
    "accuracy_after",
]


def subject_policy(seed: int) -> SubjectPolicy:
    """The policy every replayed loop refits each round: per-subject accuracy, cheap enough for many loops."""
    return SubjectPolicy(seed=seed)


def complete_questions(
    questions: pd.DataFrame, scores: pd.DataFrame, splits: pd.DataFrame, experts: list[str], split: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The questions of one split with a recorded outcome for every one of ``experts``, and those outcomes
    (indexed like the questions): a loop and its full-information bound then see the same questions."""
    rows = scores.loc[scores.index.isin(split_index(splits, split)), experts].dropna()
    keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
    chosen = questions[keys.isin(rows.index)].reset_index(drop=True)
    return chosen, rows.loc[pd.MultiIndex.from_frame(chosen[["subject", "idx"]])].set_axis(chosen.index)


def best_single_expert(train: pd.DataFrame, test: pd.DataFrame, costs: pd.Series, budget: float) -> tuple[str, float]:
    """The expert the budget affords with the best training accuracy (chosen on the training split), and
    its test accuracy: the paper's baseline."""
    affordable = [e for e in train.columns if costs[e] <= budget]
    expert = train[affordable].mean().idxmax()
    return expert, float(test[expert].mean())


def full_information_accuracy(
    train_questions, train_outcomes, test_questions, test_outcomes, make_policy, costs, budget, mode, seed
) -> float:
    """Test accuracy of the policy fitted on every recorded outcome of the training questions: the line a
    loop aims at."""
    outcomes = train_outcomes.set_axis(pd.MultiIndex.from_frame(train_questions[["subject", "idx"]]))
    policy = make_policy(seed).fit(train_questions, outcomes)
    return routed_accuracy(Orchestrator(policy, costs, mode=mode).route(test_questions, budget), test_outcomes)


def _learning_curve(study: Study, curve: SelfPlayCurve) -> tuple[pd.DataFrame, dict]:
    """Every strategy, once per seed, over the pool's training questions that all its experts answered, each
    stopping at ``max_evaluation_share`` of full information's evaluations (every expert on every one of those
    questions). Rows ``CURVE_COLUMNS`` (plus ``questions``), and the lines the curves are read against: the best
    single expert and full information's final accuracy (the policy fitted on all those evaluations)."""
    settings, benchmark = study.profile.selfplay, study.pools[curve.pool].benchmark
    questions, scores, splits, experts = (
        study.questions_of(benchmark),
        study.scores,
        study.splits,
        study.served[curve.pool],
    )
    costs, seeds = study.costs, [study.profile.seed + i for i in range(settings.seeds)]
    train, train_outcomes = complete_questions(questions, scores, splits, experts, "train")
    test, test_outcomes = complete_questions(questions, scores, splits, experts, "test")
    if settings.max_test_questions is not None and settings.max_test_questions < len(test):
        test = test.sample(n=settings.max_test_questions, random_state=seeds[0]).sort_index()
        test_outcomes = test_outcomes.loc[test.index]
    full_evaluations = train_outcomes.size
    stop = int(settings.max_evaluation_share * full_evaluations)
    rows = []
    runs = [(strategy, seed) for strategy in STRATEGIES for seed in seeds]
    for strategy, seed in tqdm(runs, desc=f"learning curves ({curve.pool})", unit="loop"):
        loop = SelfPlayLoop.from_settings(
            strategy,
            train,
            ReplayEvaluator(scores[experts], splits),
            experts,
            subject_policy,
            costs,
            curve.budget,
            settings,
            seed,
            test,
            test_outcomes,
            max_evaluations=stop,
        )
        rows.append(loop.run(progress=False).assign(seed=seed))
    table = pd.concat(rows, ignore_index=True).assign(benchmark=benchmark, pool=curve.pool, budget=curve.budget)
    lines = {
        "best_single_expert": best_single_expert(train_outcomes, test_outcomes, costs, curve.budget),
        "full_information_accuracy": full_information_accuracy(
            train,
            train_outcomes,
            test,
            test_outcomes,
            subject_policy,
            costs,
            curve.budget,
            settings.routing_mode,
            seeds[0],
        ),
        "full_information_evaluations": full_evaluations,
    }
    return table[CURVE_COLUMNS + ["questions"]], lines


def learning_curves(study: Study) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The learning curves of every ``selfplay.curves`` entry (one pool at one budget each), in one table, and
    per pool the lines they are read against (``_learning_curve``)."""
    runs = {curve.pool: _learning_curve(study, curve) for curve in study.profile.selfplay.curves}
    return pd.concat([rows for rows, _ in runs.values()], ignore_index=True), {p: line for p, (_, line) in runs.items()}


def interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t interval over seeds."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, mean - half, mean + half


def curve_bands(curve: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark, pool, strategy and round: mean evaluations, mean accuracy and its 95% interval over seeds."""
    rows = []
    for (benchmark, pool, budget, strategy, round_), group in curve.groupby(
        ["benchmark", "pool", "budget", "strategy", "round"], sort=False
    ):
        mean, low, high = interval(group["accuracy"])
        rows.append(
            {
                "benchmark": benchmark,
                "pool": pool,
                "budget": budget,
                "strategy": strategy,
                "round": round_,
                "evaluations": group["evaluations"].mean(),
                "accuracy": mean,
                "accuracy_low": low,
                "accuracy_high": high,
                "n_seeds": len(group),
            }
        )
    return pd.DataFrame(rows)


def curve_goals(curve: pd.DataFrame, lines: dict[str, dict]) -> pd.DataFrame:
    """One row per benchmark, pool and strategy at its final round: evaluations (and their share of full
    information's), accuracy and the share of full information's gain over the best single expert, each
    with a 95% interval over seeds. ``lines``: pool -> what ``learning_curves`` returned beside the curve."""
    rows = []
    for (benchmark, pool, budget, strategy), group in curve.groupby(
        ["benchmark", "pool", "budget", "strategy"], sort=False
    ):
        line = lines[pool]
        single, full = line["best_single_expert"][1], line["full_information_accuracy"]
        final = group.sort_values("round").groupby("seed").tail(1)
        first = group[group["round"] == group["round"].min()]
        accuracy = interval(final["accuracy"])
        # no gain to share where full information does not beat the best single expert
        gain = interval((final["accuracy"] - single) / (full - single)) if full > single else (np.nan,) * 3
        rows.append(
            {
                "benchmark": benchmark,
                "pool": pool,
                "budget": budget,
                "strategy": strategy,
                "evaluations": final["evaluations"].mean(),
                "evaluations_share": final["evaluations"].mean() / line["full_information_evaluations"],
                "gain_share": gain[0],
                "gain_share_low": gain[1],
                "gain_share_high": gain[2],
                "accuracy": accuracy[0],
                "accuracy_low": accuracy[1],
                "accuracy_high": accuracy[2],
                "first_round_accuracy": first["accuracy"].mean(),
                "n_seeds": final["seed"].nunique(),
                "best_single_accuracy": single,
                "full_information_accuracy": full,
            }
        )
    return pd.DataFrame(rows)


def training_evaluation_share(
    questions: pd.DataFrame,
    scores: pd.DataFrame,
    splits: pd.DataFrame,
    experts: list[str],
    costs: pd.Series,
    make_policy,
    settings: SelfPlay,
    training: SelfPlayTraining,
    seed: int,
) -> tuple[float | None, pd.DataFrame]:
    """The share of full information's evaluations the self-play training set may spend, chosen on the training
    split only: the paper's loop runs on part of the training questions that all ``experts`` answered and is
    judged, round by round, on the other ``validation_share`` of them, routed under ``training.budget``. The share
    is that of the first round from which its accuracy stays at or above the best single expert plus
    ``gain_share`` of full information's gain over it; None (ask every training question) if no round does.
    Returns the share and the validation curve."""
    train, outcomes = complete_questions(questions, scores, splits, experts, "train")
    held = train.sample(frac=training.validation_share, random_state=seed).index
    asked, validation = train.drop(held), train.loc[held]
    single = best_single_expert(outcomes.loc[asked.index], outcomes.loc[held], costs, training.budget)[1]
    full = full_information_accuracy(
        asked,
        outcomes.loc[asked.index],
        validation,
        outcomes.loc[held],
        make_policy,
        costs,
        training.budget,
        settings.routing_mode,
        seed,
    )
    loop = SelfPlayLoop.from_settings(
        GREEDY,
        asked,
        ReplayEvaluator(scores[experts], splits),
        experts,
        make_policy,
        costs,
        training.budget,
        settings,
        seed,
        validation,
        outcomes.loc[held],
    )
    curve = loop.run(progress=False)
    curve["evaluations_share"] = curve["evaluations"] / outcomes.loc[asked.index].size
    curve["target"] = single + training.gain_share * (full - single)
    stays = (curve["accuracy"] >= curve["target"])[::-1].cummin()[::-1]
    share = float(curve.loc[stays, "evaluations_share"].iloc[0]) if stays.any() else None
    return share, curve[["round", "evaluations", "evaluations_share", "accuracy", "target"]]


def new_expert_study(study: Study) -> pd.DataFrame:
    """For each expert of ``settings.new_expert``: the paper's loop starts over the pool's training questions
    without it; at ``arrives_round`` it joins (``SelfPlayLoop.add_expert``). The decision is compared with the
    one Algorithm 1 takes under the same rule with every training question (full information), and the
    evaluations of the new expert with scoring it on every training question. Rows ``NEW_EXPERT_COLUMNS``,
    plus the loop's other evaluations spent on the decision and the two universes."""
    settings, seed = study.profile.selfplay, study.profile.seed
    new = settings.new_expert
    benchmark = study.pools[new.pool].benchmark
    candidates, scores, splits, costs = study.served[new.pool], study.scores, study.splits, study.costs
    questions = study.questions_of(benchmark)
    rule_text = f"{new.rule.rule}, " + (
        f"budget {new.rule.price_cap:g}" if new.rule.price_cap is not None else f"k {new.rule.k}"
    )
    train, outcomes = complete_questions(questions, scores, splits, candidates, "train")
    test, test_outcomes = complete_questions(questions, scores, splits, candidates, "test")
    rows = []
    for expert in new.experts:
        full_decision = expert in universe_by_rule(outcomes, new.rule, costs)
        loop = SelfPlayLoop.from_settings(
            GREEDY,
            train,
            ReplayEvaluator(scores[candidates], splits),
            [e for e in candidates if e != expert],
            subject_policy,
            costs,
            new.budget,
            settings,
            seed,
            test,
            test_outcomes,
        )
        loop.run(max_rounds=new.arrives_round, progress=False)
        joined = loop.add_expert(expert, new.rule, new.step, new.patience, new.max_evaluations)
        decision = "serve" if full_decision else "refuse"
        rows.append(
            {
                "benchmark": benchmark,
                "pool": new.pool,
                "rule": rule_text,
                "new_expert": expert,
                "arrives_round": new.arrives_round,
                "full_information_decision": decision,
                "loop_decision": joined["loop_decision"],
                "matches": joined["loop_decision"] == decision,
                "new_expert_evaluations": joined["new_expert_evaluations"],
                "full_scoring_evaluations": int(
                    scores.loc[scores.index.isin(split_index(splits, "train")), expert].notna().sum()
                ),
                "accuracy_before": joined["accuracy_before"],
                "accuracy_after": joined["accuracy_after"],
                "other_evaluations": joined["other_evaluations"],
                "universe_with": ", ".join(joined["universe_with"]),
            }
        )
    return pd.DataFrame(rows)


def training_sets(study: Study) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Notebook 04's two training sets: ``full`` (every recorded outcome of the training split) and ``selfplay``
    (what the paper's loop asks, per benchmark over the union of its pools' served experts, stopped at the
    evaluation share ``training_evaluation_share`` chooses on the training split). Returns both and a table of
    their sizes per benchmark; a test question in either is an error."""
    profile, settings, scores, splits = study.profile, study.profile.selfplay, study.scores, study.splits
    full_set = scores.loc[split_index(splits, "train")]
    selfplay_sets, sizes = {}, {}
    for b in profile.benchmarks:
        questions = study.questions_of(b)
        curve_pool = next(c.pool for c in settings.curves if profile.pools[c.pool].benchmark == b)
        share, _ = training_evaluation_share(
            questions,
            scores,
            splits,
            study.served[curve_pool],
            study.costs,
            subject_policy,
            settings,
            settings.training[b],
            profile.seed,
        )
        experts = served_union(study.served, profile.pools_of(b))
        train = questions[pd.MultiIndex.from_frame(questions[["subject", "idx"]]).isin(full_set.index)]
        full_evaluations = int(
            full_set.loc[pd.MultiIndex.from_frame(train[["subject", "idx"]]), experts].notna().sum().sum()
        )
        limit = None if share is None else int(share * full_evaluations)
        loop = training_loop(
            questions,
            scores,
            splits,
            experts,
            study.costs,
            subject_policy,
            settings,
            settings.training[b],
            limit,
            profile.seed,
        )
        loop.run(progress=False)
        selfplay_sets[b] = loop.gathered
        sizes[b] = {
            "chosen share (training split)": share,
            "experts": len(loop.experts),
            "questions": len(loop.gathered),
            "evaluations, full": full_evaluations,
            "evaluations, selfplay": loop.evaluations,
        }
    selfplay_set = pd.concat(selfplay_sets.values())
    if (
        selfplay_set.index.isin(split_index(splits, "test")).any()
        or full_set.index.isin(split_index(splits, "test")).any()
    ):
        raise RuntimeError("a test question entered a training set")
    return full_set, selfplay_set, pd.DataFrame.from_dict(sizes, orient="index")
