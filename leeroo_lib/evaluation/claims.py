"""The paper's claims, each with a verdict computed from the results files.

``data/claims.csv`` holds the claims as data: the paper's words, where they stand, the paper's number, the kind
of claim and what decides it (``decided_by``: which measurement, on which pool, budget and reference). Each
claim's measurement is read from the file the notebook that makes it wrote, and ``verdict`` applies one rule per
kind of claim to its 95% interval:

- ``greater`` (ours beats the reference by the paper's number, or by some amount where the paper gives none):
  *holds* when the interval lies above zero and reaches the paper's number; *holds, smaller* when it lies above
  zero but below the paper's number; *does not hold* when it reaches zero or below.
- ``within`` (ours is on par, or nearly matches: no worse than the reference by more than the claim's
  ``margin``): *holds* when the interval's lower end is at least ``-margin``; else *does not hold*.
- ``agrees`` (a decision the loop makes is the one full information makes): *holds* when every decision
  agrees; else *does not hold*.

A claim that needs a record the project does not have, or a pool the profile lacks, is *not testable here*, with
the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..config import DATA_DIR, Profile
from ..experts.catalog import expert_label, load_catalog

CLAIMS_FILE = "claims.csv"
VERDICTS = ("holds", "holds, smaller", "does not hold", "not testable here")
KINDS = ("greater", "within", "agrees")
CLAIM_COLUMNS = [
    "id",
    "benchmark",
    "claim",
    "where",
    "paper_value",
    "unit",
    "measured",
    "ci_low",
    "ci_high",
    "reference",
    "questions",
    "verdict",
    "reason",
    "redrawn_splits",
    "evidence",
    "notebook",
]


class NotTestable(Exception):
    """A claim this project cannot decide: the message says why."""


@dataclass(frozen=True)
class Measurement:
    """What decides one claim: the measured value and its 95% interval (in the claim's unit), what it was
    measured against, on which questions, and where it is written (file and row, and the notebook that writes
    it)."""

    value: float
    low: float
    high: float
    reference: str
    questions: str
    evidence: str
    notebook: str


def verdict(kind: str, low: float, high: float, paper_value: float | None = None, margin: float | None = None) -> str:
    """The verdict of a claim of ``kind`` whose measurement has the 95% interval [``low``, ``high``], against the
    paper's number (``greater``; None or NaN: the paper gives no size) or the claim's ``margin`` (``within``);
    the rules of the module's docstring, written once."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of claim {kind!r}: one of {KINDS}")
    if low > high:
        raise ValueError(f"interval [{low}, {high}] is empty: its low end is above its high end")
    if kind == "greater":
        if low <= 0:
            return "does not hold"
        no_size = paper_value is None or np.isnan(paper_value)
        return "holds" if no_size or high >= paper_value else "holds, smaller"
    if kind == "within":
        if margin is None or np.isnan(margin) or margin < 0:
            raise ValueError(f"a 'within' claim needs a margin of zero or more, not {margin}")
        return "holds" if low >= -margin else "does not hold"
    return "holds" if low >= 1 else "does not hold"


def load_claims(path: Path | None = None) -> pd.DataFrame:
    """The claims of ``data/claims.csv``, checked: known kinds, a margin for every ``within`` claim."""
    path = path or DATA_DIR / CLAIMS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the claims ledger reads the paper's claims from it")
    claims = pd.read_csv(path)
    unknown = sorted(set(claims["kind"]) - set(KINDS))
    if unknown:
        raise ValueError(f"{path}: unknown kind(s) {unknown}; known: {KINDS}")
    no_margin = claims[(claims["kind"] == "within") & claims["margin"].isna()]
    if len(no_margin):
        raise ValueError(f"{path}: 'within' claims {no_margin['id'].tolist()} need a margin")
    return claims


def _read(results: Path, name: str, notebook: str) -> pd.DataFrame:
    path = results / name
    if not path.exists():
        raise NotTestable(f"results/{name} is missing: run notebooks/{notebook}.ipynb")
    return pd.read_csv(path)


def _points(frame: pd.DataFrame, value: str, low: str, high: str, scale: float = 1.0) -> tuple[float, float, float]:
    row = frame.iloc[0]
    return scale * row[value], scale * row[low], scale * row[high]


def _goal(claim, results: Path, profile: Profile) -> Measurement:
    """A goal of notebook 04 (``results/goals.csv``): the saved orchestrator's policy, in the profile's allocation
    mode, against the reference alone on the same test questions."""
    goals = _read(results, "goals.csv", "04_policy")
    router = profile.policy.orchestrator[claim.benchmark]
    rows = goals[
        (goals["router"] == router)
        & (goals["mode"] == profile.policy.mode)
        & (goals["pool"] == claim.pool)
        & np.isclose(goals["budget"], claim.budget)
        & (goals["reference"] == claim.reference)
    ]
    if rows.empty:
        raise NotTestable(
            f"results/goals.csv has no goal {claim.pool} @{claim.budget:g} against {claim.reference}: "
            "add it to the profile's evaluation.goals and rerun notebook 04"
        )
    value, low, high = _points(rows, "points over reference", "CI low", "CI high")
    row = rows.iloc[0]
    return Measurement(
        value,
        low,
        high,
        f"{expert_label(claim.reference)} ({100 * row['reference_accuracy']:.1f}%); "
        f"Leeroo {100 * row['accuracy']:.1f}% "
        f"at mean cost {row['mean cost']:.2f}, {profile.policy.mode} allocation",
        f"{row['n_questions']:,} test questions",
        f"results/goals.csv: router {router}, mode {profile.policy.mode}, goal '{row['goal']}'",
        "04_policy",
    )


def _strategy(claim, results: Path, profile: Profile) -> Measurement:
    """The best multi-call strategy at ``budget`` (a share of the reference's price), chosen on the training split
    (notebook 05, ``results/strategy_goals.csv``), against the reference on the test split."""
    goals = _read(results, "strategy_goals.csv", "05_mmlu_eval")
    if "price_share" not in goals.columns:
        raise NotTestable("results/strategy_goals.csv has no price_share column: rerun notebook 05")
    rows = goals[(goals["pool"] == claim.pool) & np.isclose(goals["price_share"], claim.budget)]
    if rows.empty or pd.isna(rows.iloc[0]["strategy"]):
        raise NotTestable(
            f"no multi-call strategy of pool {claim.pool} fits {claim.budget:g} of "
            f"{expert_label(claim.reference)}'s price "
            "on the training split (results/strategy_goals.csv)"
        )
    value, low, high = _points(rows, "difference", "diff_ci_low", "diff_ci_high", scale=100)
    row = rows.iloc[0]
    return Measurement(
        value,
        low,
        high,
        f"{expert_label(row['reference'])} ({100 * row['reference_accuracy']:.1f}%); {row['strategy']}: "
        f"{100 * row['accuracy']:.1f}% at mean cost {row['mean_cost']:.2f}",
        "the pool's test questions",
        f"results/strategy_goals.csv: pool {claim.pool}, price_share {claim.budget:g}",
        "05_mmlu_eval",
    )


def _record(claim, results: Path, profile: Profile) -> Measurement:
    """A claim against an expert the project may hold no per-question record of."""
    held = [e.name for e in load_catalog(profile) if claim.reference.lower() in e.name.lower()]
    if not held:
        raise NotTestable(
            f"no per-question record of {claim.reference} in data/ (the MMLU suites hold GPT-4 but no GPT-3.5), "
            "and the paper gives only its overall accuracy"
        )
    raise NotTestable(f"{held} are recorded, but no goal of the profile compares the pool with them")


def _measured(claim, results: Path, profile: Profile) -> Measurement:
    """A measurement of notebook 08 (``results/claim_measurements.csv``) for the claim's pool."""
    table = _read(results, "claim_measurements.csv", "08_claims")
    rows = table[(table["measurement"] == claim.decided_by) & (table["pool"] == claim.pool)]
    if rows.empty:
        raise NotTestable(f"results/claim_measurements.csv has no {claim.decided_by} of pool {claim.pool}")
    row = rows.iloc[0]
    if pd.isna(row["value"]):
        raise NotTestable(f"{claim.decided_by} of pool {claim.pool}: {row['reference']}")
    return Measurement(
        row["value"],
        row["ci_low"],
        row["ci_high"],
        row["reference"],
        row["questions"],
        f"results/claim_measurements.csv: {claim.decided_by}, pool {claim.pool}",
        "08_claims",
    )


def _selfplay_gain(claim, results: Path, profile: Profile) -> Measurement:
    """The paper's epsilon-greedy loop (``results/selfplay_curve.csv``, notebook 03): test accuracy of the
    orchestrator's policy after the last round minus after the first, per seed; a t interval over the seeds."""
    curve = _read(results, "selfplay_curve.csv", "03_selfplay")
    if not {"pool", "strategy", "seed", "round"} <= set(curve.columns):
        raise NotTestable("results/selfplay_curve.csv predates the budgeted loop: run notebooks/03_selfplay.ipynb")
    rows = curve[(curve["pool"] == claim.pool) & (curve["strategy"] == "epsilon-greedy")]
    if rows.empty:
        raise NotTestable(f"results/selfplay_curve.csv has no epsilon-greedy curve of pool {claim.pool}")
    ends = (
        rows.sort_values("round")
        .groupby("seed")
        .agg(first=("accuracy", "first"), last=("accuracy", "last"), evaluations=("evaluations", "last"))
    )
    gain = 100 * (ends["last"] - ends["first"]).to_numpy()
    if len(gain) < 2:
        raise NotTestable(
            f"results/selfplay_curve.csv has {len(gain)} seed(s) of pool {claim.pool}: an interval needs 2"
        )
    half = stats.t.ppf(0.975, len(gain) - 1) * gain.std(ddof=1) / np.sqrt(len(gain))
    return Measurement(
        gain.mean(),
        gain.mean() - half,
        gain.mean() + half,
        f"its own first round ({100 * ends['first'].mean():.1f}% -> {100 * ends['last'].mean():.1f}% after "
        f"{ends['evaluations'].mean():,.0f} evaluations, mean of {len(gain)} seeds)",
        "the loop's test questions",
        f"results/selfplay_curve.csv: pool {claim.pool}, strategy epsilon-greedy, first and last round",
        "03_selfplay",
    )


def _new_expert(claim, results: Path, profile: Profile) -> Measurement:
    """The new expert joining mid-loop (``results/selfplay_new_expert.csv``, notebook 03): the share of its
    decisions (serve or refuse) that match full information's."""
    table = _read(results, "selfplay_new_expert.csv", "03_selfplay")
    rows = table[table["pool"] == claim.pool]
    if rows.empty:
        raise NotTestable(f"results/selfplay_new_expert.csv has no row of pool {claim.pool}")
    share = float(rows["matches"].astype(str).str.lower().eq("true").mean())
    decided = "; ".join(
        f"{expert_label(r.new_expert)}: {r.loop_decision} after {r.new_expert_evaluations:,.0f} of its evaluations "
        f"(full information: {r.full_information_decision})"
        for r in rows.itertuples()
    )
    return Measurement(
        share,
        share,
        share,
        decided,
        f"{len(rows)} new expert(s)",
        f"results/selfplay_new_expert.csv: pool {claim.pool}",
        "03_selfplay",
    )


def _greedy_vs_exact(claim, results: Path, profile: Profile) -> Measurement:
    """Algorithm 1 against the exhaustive best set of each size k (``results/universe_greedy_vs_exact.csv``,
    notebook 02): the largest shortfall of S(U) on the training split, over the benchmark's pools and every k."""
    table = _read(results, "universe_greedy_vs_exact.csv", "02_universe")
    pools = [p for p in table["pool"].unique() if p in profile.pools and profile.pools[p].benchmark == claim.benchmark]
    rows = table[table["pool"].isin(pools)]
    if rows.empty:
        raise NotTestable(f"results/universe_greedy_vs_exact.csv has no pool of {claim.benchmark}")
    shortfall = 100 * (rows["greedy_S"] - rows["exact_S"])
    worst = rows.loc[shortfall.idxmin()]
    return Measurement(
        shortfall.min(),
        shortfall.min(),
        shortfall.min(),
        f"the exhaustive best set of each size (pools {', '.join(pools)}, k up to {rows['k'].max()})",
        "the training split (exact, no sampling)",
        f"results/universe_greedy_vs_exact.csv: pool {worst['pool']}, k {worst['k']}",
        "02_universe",
    )


MEASURES = {
    "goal": _goal,
    "strategy": _strategy,
    "record": _record,
    "stem_gain": _measured,
    "without_small": _measured,
    "oracle_gain": _measured,
    "oracle_price": _measured,
    "memory_4bit": _measured,
    "selfplay_gain": _selfplay_gain,
    "new_expert": _new_expert,
    "greedy_vs_exact": _greedy_vs_exact,
}


def measure(claim, results: Path, profile: Profile) -> Measurement:
    """The measurement that decides ``claim`` (a row of ``load_claims``), read from the files under ``results``;
    ``NotTestable`` when there is none."""
    if claim.decided_by not in MEASURES:
        raise ValueError(f"claim {claim.id}: unknown decided_by {claim.decided_by!r}; known: {sorted(MEASURES)}")
    if isinstance(claim.pool, str) and claim.pool not in profile.pools:
        raise NotTestable(f"the profile '{profile.name}' has no pool {claim.pool}")
    if claim.benchmark not in profile.benchmarks:
        raise NotTestable(f"the profile '{profile.name}' does not run {claim.benchmark}")
    return MEASURES[claim.decided_by](claim, results, profile)


def redrawn_count(claim, decided: str, redrawn: pd.DataFrame | None) -> str:
    """In how many re-drawn splits (``results/claims_redrawn.csv``, notebook 08) the claim's verdict is the main
    split's: "k of n", or "-" where the claim was not re-measured."""
    if redrawn is None:
        return "-"
    rows = redrawn[(redrawn["id"] == claim.id) & (redrawn["benchmark"] == claim.benchmark)]
    rows = rows[np.isclose(rows["budget"], claim.budget) & (rows["reference"] == claim.reference)]
    if rows.empty:
        return "-"
    stands = rows["verdict"] == decided
    return f"{int(stands.sum())} of {len(rows)}"


def claims_table(claims: pd.DataFrame, results: Path, profile: Profile, redrawn: pd.DataFrame | None = None):
    """``results/claims.csv``: every claim with what was measured, its interval, the reference and questions, the
    verdict by ``verdict``'s rules (or why it is not testable here), how it fared in the re-drawn splits, and the
    evidence (file and row) with the notebook that writes it."""
    rows = []
    for claim in claims.itertuples(index=False):
        base = {c: getattr(claim, c) for c in ("id", "benchmark", "claim", "where", "paper_value", "unit")}
        try:
            m = measure(claim, results, profile)
        except NotTestable as reason:
            rows.append(base | {"verdict": "not testable here", "reason": str(reason), "redrawn_splits": "-"})
            continue
        decided = verdict(claim.kind, m.low, m.high, claim.paper_value, claim.margin)
        rows.append(
            base
            | {
                "measured": m.value,
                "ci_low": m.low,
                "ci_high": m.high,
                "reference": m.reference,
                "questions": m.questions,
                "verdict": decided,
                "reason": "",
                "redrawn_splits": redrawn_count(claim, decided, redrawn),
                "evidence": m.evidence,
                "notebook": f"notebooks/{m.notebook}.ipynb",
            }
        )
    return pd.DataFrame(rows).reindex(columns=CLAIM_COLUMNS)
