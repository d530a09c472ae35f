"""The measurements the claims ledger (``claims``) needs that no earlier notebook makes: where the gain is (STEM
against the rest), what the small experts add (the pool without them), the best expert per question (its
accuracy and the price of the cheapest right expert), the 4-bit memory of a universe, and the main comparisons
again on re-drawn test splits. Notebook 08 writes them to ``results/claim_measurements.csv`` and
``results/claims_redrawn.csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..config import Profile
from ..data.splits import make_splits, split_index
from ..data.suites import split_basis
from ..experts.catalog import Expert, expert_costs, expert_label, get_experts
from ..routing.orchestrator import Orchestrator
from ..routing.policies import build, training_questions
from ..routing.pools import choose_universe, served_experts
from .claims import verdict
from .evaluate import N_BOOTSTRAP, bootstrap_ci, judged_questions, routed_outcomes, score_targets, test_questions
from .goal import goal_evaluation

STEM = ("math", "computer science")  # the paper's "STEM (math, computer science)", as sub-categories
SMALL_CLASSES = ("<7B", "7B")  # the paper's "7B experts": the size classes of 8B parameters and fewer
GPU_GB = 40.0  # the paper's one A100 40 GB
NF4_GB_PER_B_PARAMS = 0.5  # 4 bits a weight
NF4_OVERHEAD = 1.2  # an estimate: quantization constants, layers kept in 16 bits, runtime buffers
MEASUREMENT_COLUMNS = ["measurement", "pool", "budget", "value", "ci_low", "ci_high", "reference", "questions"]


def _row(measurement, pool, budget, values, reference, questions) -> dict:
    value, low, high = values
    return dict(zip(MEASUREMENT_COLUMNS, [measurement, pool, budget, value, low, high, reference, questions]))


def _mean_difference_ci(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), each group's questions resampled on their own."""
    rng = np.random.default_rng(seed)
    draws = [x[rng.integers(0, len(x), size=(N_BOOTSTRAP, len(x)))].mean(axis=1) for x in (a, b)]
    low, high = np.percentile(draws[0] - draws[1], [2.5, 97.5])
    return float(low), float(high)


def _outcomes(judged: pd.DataFrame, scores: pd.DataFrame, members: list[str]) -> pd.DataFrame:
    return score_targets(judged, scores[members]).reset_index(drop=True)


def stem_gain(
    orchestrator: Orchestrator, pool: str, budget: float, judged: pd.DataFrame, scores: pd.DataFrame, catalog, seed
) -> dict:
    """Figure 5's claim as one number: Leeroo's gain over the best single expert the budget affords (points) on
    the math and computer-science questions minus its gain on the others, with the share of each routed to the
    small experts (``SMALL_CLASSES``): the specialists the paper credits."""
    members = orchestrator.pools[pool]
    outcomes = _outcomes(judged, scores, members)
    routes = orchestrator.route(judged, budget, pool=pool)
    affordable = [e for e in members if orchestrator.costs[e] <= budget + 1e-12]
    best = outcomes[affordable].mean().idxmax()
    gain = 100 * (routed_outcomes(routes, judged, scores[members]) - outcomes[best].to_numpy())
    stem = judged["subcategory"].isin(STEM).to_numpy()
    small = routes.map({e.name: e.size_class in SMALL_CLASSES for e in catalog}).to_numpy(bool)
    low, high = _mean_difference_ci(gain[stem], gain[~stem], seed)
    return _row(
        "stem_gain",
        pool,
        budget,
        (gain[stem].mean() - gain[~stem].mean(), low, high),
        f"the gain over {expert_label(best)} on the other sub-categories ({gain[~stem].mean():+.1f} points; STEM "
        f"{gain[stem].mean():+.1f}); routed to experts of 8B or fewer: {100 * small[stem].mean():.0f}% of STEM "
        f"questions, {100 * small[~stem].mean():.0f}% of the others",
        f"{stem.sum():,} STEM and {(~stem).sum():,} other test questions",
    )


def without_small(
    orchestrator: Orchestrator, pool: str, budget: float, judged: pd.DataFrame, scores: pd.DataFrame, catalog, seed
) -> dict:
    """The ablation of Figure 6's claim: Leeroo over the pool against Leeroo over the pool without its small
    experts (``SMALL_CLASSES``), at the same budget on the same questions (points, paired)."""
    members = orchestrator.pools[pool]
    small = {e.name for e in get_experts(members, catalog) if e.size_class in SMALL_CLASSES}
    rest = [e for e in members if e not in small]
    full = routed_outcomes(orchestrator.route(judged, budget, pool=pool), judged, scores[members])
    if not rest or orchestrator.costs[rest].min() > budget + 1e-12:
        raise ValueError(f"pool '{pool}' without its small experts affords no expert at {budget}")
    ablated = routed_outcomes(orchestrator.route(judged, budget, experts=rest), judged, scores[members])
    low, high = bootstrap_ci(full - ablated, seed)
    return _row(
        "without_small",
        pool,
        budget,
        (100 * (full - ablated).mean(), 100 * low, 100 * high),
        f"the pool without its {len(small)} experts of 8B or fewer ({100 * ablated.mean():.1f}% against "
        f"{100 * full.mean():.1f}%)",
        f"{len(judged):,} test questions",
    )


def oracle_gain(pool: str, members: list[str], judged: pd.DataFrame, scores: pd.DataFrame, seed: int) -> dict:
    """The best served expert per question (the oracle) against the best single served expert (points, paired)."""
    outcomes = _outcomes(judged, scores, members)
    oracle, best = outcomes.max(axis=1).to_numpy(), outcomes.mean().idxmax()
    difference = oracle - outcomes[best].to_numpy()
    low, high = bootstrap_ci(difference, seed)
    return _row(
        "oracle_gain",
        pool,
        np.nan,
        (100 * difference.mean(), 100 * low, 100 * high),
        f"{expert_label(best)} alone ({100 * outcomes[best].mean():.1f}%); the oracle {100 * oracle.mean():.1f}%",
        f"{len(judged):,} test questions",
    )


def oracle_price(
    pool: str, members: list[str], judged: pd.DataFrame, scores: pd.DataFrame, costs: pd.Series, reference, seed
) -> dict:
    """What the oracle pays: the price of the cheapest served expert that is right, on the questions some expert
    answers, against ``reference``'s price (the reference's price minus it, USD per 1M tokens)."""
    outcomes = _outcomes(judged, scores, members)
    right = outcomes.to_numpy() == 1
    answered = right.any(axis=1)
    prices = np.where(right, costs[members].to_numpy(), np.inf).min(axis=1)[answered]
    low, high = bootstrap_ci(prices, seed)
    reference_price = float(costs[reference])
    return _row(
        "oracle_price",
        pool,
        np.nan,
        (reference_price - prices.mean(), reference_price - high, reference_price - low),
        f"{expert_label(reference)}'s price {reference_price:.2f}; the cheapest right expert costs {prices.mean():.3f} "
        "on average",
        f"the {answered.sum():,} of {len(judged):,} test questions some served expert answers",
    )


def memory_4bit(pool: str, members: list[Expert]) -> dict:
    """Whether a universe's experts fit one 40 GB GPU in 4 bits: an estimate on paper (parameters x 4 bits x
    ``NF4_OVERHEAD``), not a run; GB to spare (negative: short)."""
    unknown = [e.name for e in members if e.params_b is None or np.isnan(e.params_b)]
    if unknown:
        return _row("memory_4bit", pool, np.nan, (np.nan,) * 3, f"no parameter count for {unknown}", "-")
    params = sum(e.params_b for e in members)
    need = params * NF4_GB_PER_B_PARAMS * NF4_OVERHEAD
    return _row(
        "memory_4bit",
        pool,
        np.nan,
        (GPU_GB - need,) * 3,
        f"an estimate, computed, not run: {len(members)} served experts, {params:.0f}B parameters x 4 bits x "
        f"{NF4_OVERHEAD} = {need:.0f} GB against {GPU_GB:.0f} GB",
        "-",
    )


def claim_measurements(
    claims: pd.DataFrame,
    orchestrator: Orchestrator,
    judged: dict[str, pd.DataFrame],
    scores: pd.DataFrame,
    catalog: list[Expert],
    profile: Profile,
) -> pd.DataFrame:
    """``results/claim_measurements.csv``: every measurement of this module that a claim of ``claims`` asks for
    (its ``decided_by``, pool and budget) on a pool of the profile."""
    costs = expert_costs(catalog)
    rows = []
    for claim in claims[claims["pool"].isin(list(orchestrator.pools))].itertuples(index=False):
        pool, members, seed = claim.pool, orchestrator.pools[claim.pool], profile.seed
        on = judged[pool]
        if claim.decided_by == "stem_gain":
            rows.append(stem_gain(orchestrator, pool, claim.budget, on, scores, catalog, seed))
        elif claim.decided_by == "without_small":
            rows.append(without_small(orchestrator, pool, claim.budget, on, scores, catalog, seed))
        elif claim.decided_by == "oracle_gain":
            rows.append(oracle_gain(pool, members, on, scores, seed))
        elif claim.decided_by == "oracle_price":
            rows.append(oracle_price(pool, members, on, scores, costs, claim.reference, seed))
        elif claim.decided_by == "memory_4bit":
            rows.append(memory_4bit(pool, get_experts(members, catalog)))
    return pd.DataFrame(rows, columns=MEASUREMENT_COLUMNS)


def redrawn_split(scores: pd.DataFrame, questions: pd.DataFrame, profile: Profile, seed: int) -> pd.DataFrame:
    """The test split drawn again as notebook 01 draws it (``split_basis``, the profile's test fraction), with
    another seed."""
    return pd.concat(
        [
            make_splits(
                split_basis(b, scores.loc[scores.index.isin(_keys(questions[questions["benchmark"] == b]))]),
                profile.test_fraction,
                seed,
            )
            for b in profile.benchmarks
        ],
        ignore_index=True,
    )


def _keys(questions: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(questions[["subject", "idx"]])


def redrawn_goals(
    claims: pd.DataFrame,
    questions: pd.DataFrame,
    scores: pd.DataFrame,
    catalog: list[Expert],
    profile: Profile,
    embedder,
) -> pd.DataFrame:
    """The goal claims again on each re-drawn split (``redrawn_split`` with each seed of the profile's
    ``evaluation.redraw``): each pool's universe chosen anew on its training split, the orchestrator's policy
    refitted on the recorded outcomes of it (as many questions as ``redraw.train_questions`` says), and the
    claim's comparison on its test split; one row per claim and seed with the measured points, the interval and
    the verdict. ``results/claims_redrawn.csv``."""
    goals = claims[(claims["decided_by"] == "goal") & claims["pool"].isin(list(profile.pools))]
    costs, rows = expert_costs(catalog), []
    redraw = profile.evaluation.redraw
    for seed in tqdm(redraw.seeds, desc="re-drawn splits"):
        splits = redrawn_split(scores, questions, profile, seed)
        served = served_experts(
            pd.concat([choose_universe(scores, splits, profile.pools[p], catalog) for p in goals["pool"].unique()])
        )
        train = split_index(splits, "train")
        for benchmark, of in goals.groupby("benchmark", sort=False):
            experts = list(dict.fromkeys(e for p in of["pool"] for e in served[p]))
            on = questions[questions["benchmark"] == benchmark]
            data = scores.loc[scores.index.isin(train) & scores.index.isin(_keys(on)), experts].dropna(how="all")
            name = profile.policy.orchestrator[benchmark]
            policy = build(name, profile.policy, device=profile.device, seed=profile.seed, embedder=embedder)
            cap = redraw.train_questions or profile.policy.rows_cap(name, benchmark)
            rows_read = training_questions(on, data, splits, cap, profile.seed)
            policy.fit(rows_read, data)
            test = test_questions(on, splits)
            references = [r for r in of["reference"].unique() if r not in experts]
            outcomes = score_targets(test, scores[experts + references])
            proba = policy.predict_proba(test)[experts]
            for claim in of.itertuples(index=False):
                measured = served[claim.pool] + [claim.reference] * (claim.reference not in served[claim.pool])
                keep = _keys(test).isin(_keys(judged_questions(test, scores, measured)))
                result = goal_evaluation(
                    {name: proba[keep].reset_index(drop=True)},
                    outcomes[keep].reset_index(drop=True),
                    costs,
                    served[claim.pool],
                    reference=claim.reference,
                    budget=claim.budget,
                    seed=profile.seed,
                )
                row = result.table[result.table["mode"] == profile.policy.mode].iloc[0]
                low, high = row["CI low"], row["CI high"]
                rows.append(
                    {
                        "id": claim.id,
                        "benchmark": benchmark,
                        "pool": claim.pool,
                        "budget": claim.budget,
                        "reference": claim.reference,
                        "seed": seed,
                        "measured": row["points over reference"],
                        "ci_low": low,
                        "ci_high": high,
                        "verdict": verdict(claim.kind, low, high, claim.paper_value, claim.margin),
                    }
                )
    return pd.DataFrame(rows)
