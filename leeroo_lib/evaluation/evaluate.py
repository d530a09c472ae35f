"""Evaluation of routers on a benchmark's fixed test split: the paper's Table 1, Figure 5 and Figure 6 data.

A router's result is a Series of expert names indexed like the test questions; its outcome on a
question is the recorded eval(e_j(q_i)) of the expert it chose. Every accuracy of ours comes with
a seeded 95% bootstrap interval over questions, and every Leeroo row with its paired differences to
the best single expert that costs no more (the paper's baseline) and to the zero router at its mean cost
(RouterBench's: the best random mix of two single experts, ``aiq.zero_router``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..experts.catalog import Expert, get_experts
from ..routing.orchestrator import picked_outcomes
from ..routing.policies.base import score_targets
from .aiq import zero_router
from .question_tokens import TokenEstimate

TABLE1_COLUMNS = [
    "system",
    "kind",
    "cost_per_1m_usd",
    "accuracy",
    "ci_low",
    "ci_high",
    "n_questions",
    "source",
    "pool",
    "budget",
    "best_single_at_cost",
    "diff_vs_best_single",
    "diff_ci_low",
    "diff_ci_high",
    "served",
    "note",
    "zero_router_mix",
    "diff_vs_zero_router",
    "zero_ci_low",
    "zero_ci_high",
    "usd_per_1000_questions",
    "trained_on",
    "training_evaluations",
    "allocation",
]
N_BOOTSTRAP = 2000
LOGLIKELIHOOD, GENERATIVE = "loglikelihood", "generative"


def bootstrap_ci(correct: np.ndarray, seed: int, n_boot: int = N_BOOTSTRAP) -> tuple[float, float]:
    """95% percentile interval of the mean of per-question values, resampling questions."""
    correct = np.asarray(correct, dtype=float)
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(n_boot, len(correct)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def routed_outcomes(routes: pd.Series, questions: pd.DataFrame, scores: pd.DataFrame) -> np.ndarray:
    """``picked_outcomes`` for routes indexed like ``questions``, reading the score matrix
    (indexed by (subject, idx)) at their rows."""
    return picked_outcomes(routes, score_targets(questions, scores))


def protocol_family(expert: Expert) -> str:
    return GENERATIVE if expert.protocol.startswith("generative") else LOGLIKELIHOOD


def protocol_note(experts: list[Expert]) -> str:
    """Says when a result mixes experts scored generatively with experts scored by loglikelihood."""
    families = {protocol_family(e) for e in experts}
    if len(families) < 2:
        return ""
    gen = sorted(e.name.split("/")[-1] for e in experts if protocol_family(e) == GENERATIVE)
    return f"mixes protocols: {', '.join(gen)} generative 5-shot, the rest loglikelihood/leaderboard 5-shot"


def judged_questions(
    questions: pd.DataFrame, scores: pd.DataFrame, experts: list[str], limit: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """The rows of ``questions`` where every one of ``experts`` has a result in ``scores`` (indexed by
    (subject, idx)): where a pool serving them is judged. Never filled: the others are left out.
    ``limit`` keeps a seeded sample of them, in (subject, idx) order."""
    measured = score_targets(questions, scores[experts]).notna().all(axis=1)
    judged = questions[measured.to_numpy()]
    if limit is not None and limit < len(judged):
        judged = judged.sample(n=limit, random_state=seed).sort_values(["subject", "idx"])
    return judged.reset_index(drop=True)


def coverage(tests: dict[str, pd.DataFrame], scores: pd.DataFrame, served: dict[str, list[str]]) -> pd.DataFrame:
    """Per pool and sub-category (MMLU's 17, MMLU-Pro's 14 categories) and over all (``all``): the test
    questions of the pool's benchmark (``tests``: pool -> them), those it is judged on (every served expert
    measured, ``judged_questions``) and their share."""
    rows = []
    for pool, test in tests.items():
        judged = judged_questions(test, scores, served[pool])
        counts = pd.DataFrame(
            {"test_questions": test["subcategory"].value_counts(), "judged": judged["subcategory"].value_counts()}
        )
        counts = counts.fillna(0).astype(int).sort_index()
        counts.loc["all"] = counts.sum()
        rows.append(counts.rename_axis("subcategory").reset_index().assign(pool=pool))
    table = pd.concat(rows, ignore_index=True)
    table["share"] = table["judged"] / table["test_questions"]
    return table[["pool", "subcategory", "test_questions", "judged", "share"]]


def _served(test_scores: pd.DataFrame) -> str:
    return ", ".join(str(e).split("/")[-1] for e in test_scores.columns)


def single_expert_rows(
    test_scores: pd.DataFrame,
    catalog: list[Expert],
    seed: int,
    pool: str | None = None,
    questions: pd.DataFrame | None = None,
    tokens: TokenEstimate | None = None,
) -> pd.DataFrame:
    """Each expert answering every test question alone (of ``pool``, when given); with the ``questions``
    (rows of ``test_scores``) and their ``tokens`` in and out, what that costs per 1,000 questions."""
    rows = []
    for e in get_experts(list(test_scores.columns), catalog):
        correct = test_scores[e.name].to_numpy()
        low, high = bootstrap_ci(correct, seed)
        usd = (
            usd_per_1000_questions(pd.Series(e.name, index=questions.index), questions, tokens, catalog)
            if tokens is not None
            else np.nan
        )
        rows.append(
            {
                "system": e.name,
                "kind": "single",
                "cost_per_1m_usd": e.cost_per_1m_usd,
                "accuracy": correct.mean(),
                "ci_low": low,
                "ci_high": high,
                "n_questions": len(correct),
                "source": "this repo",
                "pool": pool,
                "note": e.protocol,
                "usd_per_1000_questions": usd,
            }
        )
    return pd.DataFrame(rows)


def oracle_row(test_scores: pd.DataFrame, catalog: list[Expert], pool: str, seed: int) -> dict:
    """The best possible router over a pool: right whenever any of its experts is right."""
    correct = test_scores.max(axis=1).to_numpy()
    low, high = bootstrap_ci(correct, seed)
    return {
        "system": f"Oracle ({pool})",
        "kind": "oracle",
        "accuracy": correct.mean(),
        "ci_low": low,
        "ci_high": high,
        "n_questions": len(correct),
        "source": "this repo",
        "pool": pool,
        "served": _served(test_scores),
        "note": protocol_note(get_experts(list(test_scores.columns), catalog)),
    }


def router_row(
    name: str,
    pool: str,
    budget: float,
    routes: pd.Series,
    questions: pd.DataFrame,
    test_scores: pd.DataFrame,
    catalog: list[Expert],
    seed: int,
    allocation: str,
    tokens: TokenEstimate | None = None,
) -> dict:
    """One budgeted router on the test split (``test_scores``: the pool's served experts), allocating by
    ``allocation`` (the orchestrator's mode: global or sequential, ``routing.budget.allocate``), with its
    paired difference to the best single expert of the same pool that the budget affords (cost <= budget:
    the router may spend a little less than its budget, and that must not exclude an expert priced at the
    budget) and to the zero router at its mean cost; with the questions' ``tokens`` in and out, what its
    routes cost per 1,000 questions."""
    experts = get_experts(list(test_scores.columns), catalog)
    cost = pd.Series({e.name: e.cost_per_1m_usd for e in experts})
    correct = routed_outcomes(routes, questions, test_scores)
    spent = float(cost[routes].mean())
    low, high = bootstrap_ci(correct, seed)
    affordable = cost[cost <= budget + 1e-12].index
    served = score_targets(questions, test_scores)
    single = served[affordable]
    best = single.mean().idxmax()
    diff = correct - single[best].to_numpy()
    d_low, d_high = bootstrap_ci(diff, seed)
    used = get_experts(sorted(set(routes)), catalog)
    zero, mix = zero_router(served, cost, spent)
    z_low, z_high = bootstrap_ci(correct - zero, seed)
    return {
        "system": name,
        "kind": "leeroo",
        "cost_per_1m_usd": spent,
        "accuracy": correct.mean(),
        "ci_low": low,
        "ci_high": high,
        "n_questions": len(correct),
        "source": "this repo",
        "pool": pool,
        "budget": budget,
        "best_single_at_cost": best,
        "diff_vs_best_single": diff.mean(),
        "diff_ci_low": d_low,
        "diff_ci_high": d_high,
        "served": _served(test_scores),
        "note": protocol_note(used),
        "zero_router_mix": "; ".join(f"{e} {share:.0%}" for e, share in mix.items()),
        "diff_vs_zero_router": (correct - zero).mean(),
        "zero_ci_low": z_low,
        "zero_ci_high": z_high,
        "usd_per_1000_questions": (
            usd_per_1000_questions(routes, questions, tokens, catalog) if tokens is not None else np.nan
        ),
        "allocation": allocation,
    }


def usd_per_1000_questions(
    routes: pd.Series, questions: pd.DataFrame, tokens: TokenEstimate, catalog: list[Expert]
) -> float:
    """What the routed answers cost, per 1,000 questions: each question's prompt (its own text and the
    estimated 5-shot chain-of-thought prefix of its category) at the routed expert's input price, plus that
    expert's recorded answer at its output price, in tokens (``question_tokens.estimate_tokens``). Beside the
    paper's price per token, it counts how much each expert says (MMLU-Pro)."""
    experts = get_experts(sorted(set(routes)), catalog)
    unpriced = [e.name for e in experts if e.input_usd_per_1m is None or e.output_usd_per_1m is None]
    if unpriced:
        raise ValueError(f"{unpriced} have no input and output prices in their suite: the cost per question needs them")
    price_in = pd.Series({e.name: e.input_usd_per_1m for e in experts})
    price_out = pd.Series({e.name: e.output_usd_per_1m for e in experts})
    prompt = tokens.prompt.reindex(pd.MultiIndex.from_frame(questions[["subject", "idx"]])).to_numpy()
    answer = picked_outcomes(routes, score_targets(questions, tokens.answer))
    usd = prompt * price_in[routes].to_numpy() + answer * price_out[routes].to_numpy()
    return float(usd.mean() / 1e6 * 1000)


def table1(rows: list[pd.DataFrame | dict]) -> pd.DataFrame:
    """Stack rows of ours and the paper's into the columns of results/table1.csv."""
    frames = [pd.DataFrame([r]) if isinstance(r, dict) else r for r in rows]
    return pd.concat(frames, ignore_index=True).reindex(columns=TABLE1_COLUMNS)


def selfplay_against_full(
    routes: dict[str, dict[tuple[str, float], pd.Series]],
    judged: dict[str, pd.DataFrame],
    scores: pd.DataFrame,
    served: dict[str, list[str]],
    seed: int,
) -> pd.DataFrame:
    """The orchestrator trained on what self-play paid for against the one trained on full information, at
    every (pool, budget) both routed (``routes``: training set -> (pool, budget) -> routes of the pool's judged
    questions): each accuracy and their paired difference in points with its 95% interval."""
    rows = []
    for pool, budget in routes["selfplay"]:
        pool_scores = scores[served[pool]]
        correct = {t: routed_outcomes(routes[t][pool, budget], judged[pool], pool_scores) for t in ("selfplay", "full")}
        gap = correct["selfplay"] - correct["full"]
        low, high = bootstrap_ci(gap, seed)
        rows.append(
            {
                "pool": pool,
                "budget": budget,
                "accuracy_selfplay": correct["selfplay"].mean(),
                "accuracy_full": correct["full"].mean(),
                "selfplay_minus_full": 100 * gap.mean(),
                "ci_low": 100 * low,
                "ci_high": 100 * high,
                "n_questions": len(gap),
            }
        )
    return pd.DataFrame(rows)


def subcategory_accuracy(systems: dict[str, np.ndarray], questions: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Accuracy per sub-category (rows) for each system (columns), from per-question outcomes, with each
    value's seeded 95% bootstrap interval (columns ``<system>_ci_low``, ``<system>_ci_high``)."""
    frame = pd.DataFrame(systems, index=questions.index)
    groups = frame.groupby(questions["subcategory"].to_numpy())
    out = groups.mean().rename_axis("subcategory")
    out.insert(0, "n_questions", groups.size())
    for system in systems:
        intervals = [bootstrap_ci(rows[system].to_numpy(), seed) for _, rows in groups]
        out[f"{system}_ci_low"], out[f"{system}_ci_high"] = zip(*intervals)
    return out


def routing_distribution(routes: dict[tuple[str, float], pd.Series], catalog: list[Expert]) -> pd.DataFrame:
    """Share of queries sent to each size class at each (pool, budget) tier (Figure 6), over the size
    classes of the catalog's experts on the routed experts' benchmark."""
    by_name = {e.name: e for e in catalog}
    rows = []
    for (pool, budget), r in routes.items():
        benchmark = by_name[r.iloc[0]].benchmark
        classes = list(dict.fromkeys(e.size_class for e in catalog if e.benchmark == benchmark))
        share = r.map(lambda e: by_name[e].size_class).value_counts(normalize=True)
        rows += [{"pool": pool, "budget": budget, "size_class": c, "share": float(share.get(c, 0.0))} for c in classes]
    return pd.DataFrame(rows)


def test_questions(
    questions: pd.DataFrame, splits: pd.DataFrame, limit: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """The test-split questions among ``questions`` (a benchmark's, or several), in (subject, idx) order;
    ``limit`` keeps a seeded sample of them."""
    from ..data.splits import split_index

    keyed = questions.set_index(["subject", "idx"])
    test_keys = split_index(splits, "test")
    test = keyed.loc[test_keys[test_keys.isin(keyed.index)]].reset_index()
    if limit is not None and limit < len(test):
        test = test.sample(n=limit, random_state=seed).sort_values(["subject", "idx"])
    return test.reset_index(drop=True)
