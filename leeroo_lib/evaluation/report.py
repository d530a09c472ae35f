"""The README's and docs/'s results, written from the files under results/: a table or a number is a function of
the CSVs it reads, so a number on a page is the number in the file. A table sits between
``<!-- results:NAME -->`` and ``<!-- /results -->``; a number in prose between
``<!-- value:FILE|QUERY|COLUMN|FORMAT -->`` and ``<!-- /value -->``: the row of ``results/FILE`` that the pandas
``QUERY`` selects, its ``COLUMN`` in Python's ``FORMAT`` (``COLUMN`` may name several columns joined by ``,``
for ``FORMAT`` to take in order). ``fill`` rewrites every block of a page (``leeroo report``), and a test fails
when a page and the files disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..config import TRAINING_SETS, Pool, Profile
from ..data.suites import paper_counterparts
from ..experts.catalog import expert_label
from ..routing.pools import served_experts
from .strategies import strategy_family
from .tables import percent_with_ci, table1_for_reading, usd_text

BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n).*?(<!-- /results -->)", re.DOTALL)
VALUE = re.compile(r"(<!-- value:(?P<spec>[^>]+?) -->).*?(<!-- /value -->)", re.DOTALL)
PAGES = ("README.md", "docs/*.md")  # the pages ``leeroo report`` fills, under the project's root


def _markdown(frame: pd.DataFrame) -> str:
    frame = frame.loc[:, [not (frame[c].astype(str) == "-").all() for c in frame.columns]]  # no empty column
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def router_table(table1: pd.DataFrame, pools: list[str]) -> pd.DataFrame:
    """Leeroo at each budget of ``pools``: what it spent, its accuracy, and its paired differences to the
    best single expert it affords and to the zero router at its mean cost, with USD per 1,000 questions
    (``tables.table1_for_reading``, named for the README)."""
    rows = table1_for_reading(table1[(table1["kind"] == "leeroo") & table1["pool"].isin(pools)])
    rows["best single expert the budget affords"] = rows["best single expert the budget affords"].map(expert_label)
    return rows.drop(columns=["system", "questions", "trained on", "training evaluations"]).rename(
        columns={
            "cost (USD / 1M tokens)": "spent",
            "best single expert the budget affords": "best single expert it affords",
            "difference, points [95% CI]": "vs it, points",
            "vs zero router, points [95% CI]": "vs the zero router, points",
            "USD per 1,000 questions": "USD / 1,000 questions",
        }
    )


def paper_table(table1: pd.DataFrame, counterparts: pd.DataFrame, pools: dict[str, Pool]) -> pd.DataFrame:
    """The paper's Table 1 and Figure 4 points beside ours on the test split (MMLU): each row of ``counterparts``
    (``data.suites.paper_counterparts``) with the system of this repo that answers it, in the pool of ``pools``
    that stands for the row's paper pool (``paper_pool``)."""
    ours = table1[table1["source"] == "this repo"]
    paper = table1[table1["source"] == "paper"].drop_duplicates(["system", "cost_per_1m_usd"])
    standing = {pool.paper_pool: name for name, pool in pools.items() if pool.paper_pool}
    # the paper's row of each counterpart by its key (system, cost; the oracle has no cost: NaN meets NaN)
    theirs = counterparts.merge(
        paper[["system", "cost_per_1m_usd", "accuracy"]],
        how="left",
        left_on=["paper_system", "paper_cost_per_1m_usd"],
        right_on=["system", "cost_per_1m_usd"],
        validate="many_to_one",
    )
    rows = []
    for c in theirs.itertuples():
        if c.paper_pool not in standing:
            raise ValueError(f"no pool of the profile stands for the paper's pool '{c.paper_pool}': set its paper_pool")
        if pd.isna(c.accuracy):
            raise ValueError(f"the paper has no row {c.paper_system} at cost {c.paper_cost_per_1m_usd:g}")
        pool = standing[c.paper_pool]
        mine = ours[(ours["kind"] == c.kind) & (ours["pool"] == pool)]
        mine = mine[mine["system"] == c.expert] if pd.notna(c.expert) else mine
        mine = mine[mine["budget"] == c.budget] if pd.notna(c.budget) else mine
        if mine.empty:
            raise ValueError(
                f"Table 1 has no row for {c.expert if pd.notna(c.expert) else c.kind} in pool '{pool}'"
                + (f" at budget {c.budget:g}" if pd.notna(c.budget) else "")
                + ": the README reports the cpu profile's results (leeroo report --profile cpu)"
            )
        row = mine.iloc[0]
        label = expert_label(row["system"]) if pd.isna(c.budget) else f"{row['system']}, budget {c.budget:g}"
        rows.append(
            {
                "system": f"{label} (paper: {c.paper_system})" if c.kind == "single" else label,
                "cost (USD / 1M tokens)": "-" if pd.isna(row["cost_per_1m_usd"]) else f"{row['cost_per_1m_usd']:.2f}",
                "this repo: accuracy % [95% CI]": percent_with_ci([row["accuracy"]], [row["ci_low"]], [row["ci_high"]])[
                    0
                ],
                "paper: accuracy %": f"{100 * c.accuracy:.1f}",
            }
        )
    return pd.DataFrame(rows)


def single_table(table1: pd.DataFrame, pool: str) -> pd.DataFrame:
    """A pool's experts alone, cheapest per token first, with what 1,000 questions cost each of them and
    where that puts it: verbosity reorders the price list."""
    rows = table1[(table1["kind"] == "single") & (table1["pool"] == pool)]
    rows = rows.sort_values(["cost_per_1m_usd", "usd_per_1000_questions"], kind="stable")
    return pd.DataFrame(
        {
            "expert": [expert_label(e) for e in rows["system"]],
            "USD / 1M tokens": [f"{c:g}" for c in rows["cost_per_1m_usd"]],
            "USD / 1,000 questions": usd_text(rows["usd_per_1000_questions"]),
            "rank by USD per question": [
                "-" if pd.isna(r) else str(int(r)) for r in rows["usd_per_1000_questions"].rank(method="min")
            ],
            "accuracy % [95% CI]": percent_with_ci(rows["accuracy"], rows["ci_low"], rows["ci_high"]),
        }
    )


def strategy_table(strategies: pd.DataFrame, pool: str) -> pd.DataFrame:
    """Per strategy family on ``pool``: its cheapest setting, and its most accurate."""
    rows = strategies[strategies["pool"] == pool].assign(family=lambda t: strategy_family(t["strategy"]))
    picked = []
    for family, group in rows.groupby("family", sort=False):
        cheapest, best = group["mean_cost"].idxmin(), group["accuracy"].idxmax()
        settings = (
            {"cheapest": cheapest, "most accurate": best}
            if cheapest != best
            else {"cheapest, also most accurate": best}
        )
        for label, row in ((label, group.loc[i]) for label, i in settings.items()):
            picked.append(
                {
                    "strategy": family,
                    "setting": label,
                    "mean cost": f"{row['mean_cost']:.2f}",
                    "accuracy % [95% CI]": percent_with_ci([row["accuracy"]], [row["ci_low"]], [row["ci_high"]])[0],
                    "experts asked per question": f"{row['calls_per_question']:.2f}",
                }
            )
    return pd.DataFrame(picked)


def goal_table(goals: pd.DataFrame, table1: pd.DataFrame, routers: dict[str, str], mode: str) -> pd.DataFrame:
    """Each goal (notebook 04, ``results/goals.csv``) for the saved orchestrator's policy of the goal's benchmark
    (``routers``: benchmark -> policy) in ``mode``: its accuracy against the reference's on the same test
    questions, and, from Table 1, against the zero router."""
    rows = goals[(goals["router"] == goals["benchmark"].map(routers)) & (goals["mode"] == mode)]
    leeroo = table1[table1["kind"] == "leeroo"].set_index(["pool", "budget"])
    zero = [leeroo.loc[(p, b)] if (p, b) in leeroo.index else None for p, b in zip(rows["pool"], rows["budget"])]
    return pd.DataFrame(
        {
            "pool": rows["pool"],
            "budget": [f"{b:g}" for b in rows["budget"]],
            "reference": [expert_label(e) for e in rows["reference"]],
            "questions": rows["n_questions"],
            "reference %": [f"{100 * a:.1f}" for a in rows["reference_accuracy"]],
            "Leeroo %": [f"{100 * a:.1f}" for a in rows["accuracy"]],
            "points over the reference [95% CI]": [
                f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                for d, lo, hi in rows[["points over reference", "CI low", "CI high"]].to_numpy()
            ],
            "points over the zero router [95% CI]": [
                "-"
                if z is None
                else percent_with_ci([z["diff_vs_zero_router"]], [z["zero_ci_low"]], [z["zero_ci_high"]], signed=True)[
                    0
                ]
                for z in zero
            ],
        }
    )


def training_set_table(comparison: pd.DataFrame, highlight: dict[str, float]) -> pd.DataFrame:
    """The orchestrator trained on what self-play paid for against full information (notebook 05,
    ``results/selfplay_vs_full.csv``) at each pool's highlighted budget: both accuracies, their paired
    difference and the expert evaluations each training set holds."""
    rows = comparison[[highlight.get(p) == b for p, b in zip(comparison["pool"], comparison["budget"])]]
    return pd.DataFrame(
        {
            "pool": rows["pool"],
            "budget": [f"{b:g}" for b in rows["budget"]],
            "questions": [f"{n:,}" for n in rows["n_questions"]],
            "self-play %": [f"{100 * a:.1f}" for a in rows["accuracy_selfplay"]],
            "full information %": [f"{100 * a:.1f}" for a in rows["accuracy_full"]],
            "self-play minus full, points [95% CI]": [
                f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                for d, lo, hi in rows[["selfplay_minus_full", "ci_low", "ci_high"]].to_numpy()
            ],
            "evaluations, self-play": [f"{n:,.0f}" for n in rows["evaluations_selfplay"]],
            "evaluations, full": [f"{n:,.0f}" for n in rows["evaluations_full"]],
        }
    )


def cv_table(runs: list[pd.DataFrame]) -> pd.DataFrame:
    """Cross-validation inside the training split (``leeroo cv``, one file per training set): per
    policy and training set, the signal and the points over the goal's reference at its budget in both modes."""
    rows = pd.concat(runs, ignore_index=True)
    return pd.DataFrame(
        {
            "policy": rows["policy"],
            "trained on": rows["trained_on"],
            "AUC": [f"{a:.3f}" for a in rows["auc"]],
            "within subject": [f"{a:.3f}" for a in rows["auc_within_subject"]],
            "global, points over the reference [CI]": rows["global points over reference [CI]"],
            "sequential": rows["sequential points over reference [CI]"],
        }
    )


def _measured(row) -> str:
    if pd.isna(row["measured"]):
        return "-"
    if row["unit"] == "share of decisions":
        return f"{row['measured']:.0%} agree"
    digits = 3 if row["unit"].startswith("USD") else 1
    if row["unit"] == "GB to spare":  # claim_evidence.memory_4bit: computed from parameter counts, not run
        return f"{row['measured']:+.{digits}f} (estimate)"
    if row["ci_low"] == row["ci_high"]:
        return f"{row['measured']:+.{digits}f} (exact)"
    return f"{row['measured']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"


def claims_front(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims ledger for the front page (``results/claims.csv``, notebook 08): each claim, the paper's number,
    what was measured with its interval, the verdict (or why not testable), and in how many re-drawn test splits
    the verdict stands."""
    return pd.DataFrame(
        {
            "claim": claims["id"],
            "benchmark": claims["benchmark"].map({"mmlu": "MMLU", "mmlu_pro": "MMLU-Pro"}),
            "the paper says": claims["claim"],
            "paper": [
                "-" if pd.isna(v) else ("0" if v == 0 else f"{v:+g}") + (" pts" if u == "points" else f" {u}")
                for v, u in zip(claims["paper_value"], claims["unit"])
            ],
            "measured [95% CI]": [_measured(row) for _, row in claims.iterrows()],
            "verdict": [
                f"**{v}**" + (f": {r}" if v == "not testable here" else "")
                for v, r in zip(claims["verdict"], claims["reason"].fillna(""))
            ],
            "re-drawn splits": claims["redrawn_splits"].fillna("-"),
        }
    )


def claims_detail(claims: pd.DataFrame) -> pd.DataFrame:
    """Every testable claim with what it was measured against, on which questions, and the file and row it comes
    from."""
    rows = claims[claims["verdict"] != "not testable here"]
    return pd.DataFrame(
        {
            "claim": rows["id"],
            "benchmark": rows["benchmark"],
            "measured [95% CI]": [_measured(row) + f" {row['unit']}" for _, row in rows.iterrows()],
            "against": rows["reference"],
            "on": rows["questions"],
            "evidence": rows["evidence"],
            "notebook": [f"[{Path(n).stem}](../{n})" for n in rows["notebook"]],
        }
    )


# Small results files shown as they are (numbers to three significant digits): block name -> file under results/
FILE_TABLES = {
    "quantization": "quantization.csv",
    "live-bias": "live_bias.csv",
    "duplicates": "duplicates.csv",
    "coverage": "coverage.csv",
    "prompt-tokens": "mmlu_pro_prompt_tokens.csv",
    "allocation": "allocation.csv",
    "strategy-goals": "strategy_goals.csv",
    "bench-universe": "bench_universe.csv",
    "bench-routing": "bench_routing.csv",
    "bench-scoring": "bench_scoring.csv",
    "bench-encoder": "bench_encoder.csv",
    "bench-serving": "bench_serving.csv",
    "bench-reproduce": "bench_reproduce.csv",
    "bench-fresh-clone": "bench_fresh_clone.csv",
    "selfplay-goals": "selfplay_goals.csv",
    "selfplay-new-expert": "selfplay_new_expert.csv",
}


def file_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A results file for reading: numbers to three significant digits (counts whole), names shortened."""

    def cell(v) -> str:
        if isinstance(v, float) and not pd.isna(v):
            return f"{v:,.0f}" if abs(v) >= 1000 or float(v).is_integer() else f"{v:.3g}"
        return "-" if pd.isna(v) else str(v).replace("|", "/")

    return frame.map(cell)


def signal_table(signal: pd.DataFrame, members: list[str]) -> pd.DataFrame:
    """Each policy's signal (notebook 04, ``results/policy_signal.csv``), the mean over a pool's served experts."""
    rows = signal[signal["expert"].isin(members)].groupby("policy", sort=False)[
        ["auc", "auc_within_subject", "brier", "ece"]
    ]
    return rows.mean().reset_index().map(lambda v: f"{v:.3f}" if isinstance(v, float) else v)


def _first_per_benchmark(entries: list, pools: dict[str, Pool]) -> dict[str, object]:
    """Benchmark -> the first of ``entries`` (goals, strategies: each names a ``pool``) whose pool routes it."""
    firsts = {}
    for entry in entries:
        firsts.setdefault(pools[entry.pool].benchmark, entry)
    return firsts


def tables(results: Path, profile: Profile) -> dict[str, object]:
    """Every table of the pages by its block name, as a function that writes it from the CSVs under ``results``
    (only the blocks a page shows are read). The profile picks each block's pools by what they are, never by name:
    the pools that stand for the paper's (``paper_pool``), a benchmark's pools, the pool of a benchmark's first
    ``evaluation.strategies`` entry (its experts, routers and strategies) and that of its first goal (what
    ``leeroo cv`` cross-validates, the policies' signal over its experts); it also names the saved orchestrator's
    policy per benchmark (``policy.orchestrator``), its allocation mode (``policy.mode``) and each pool's highlighted
    budget (``evaluation.highlight``)."""

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(results / name)

    pools, routers, mode = profile.pools, profile.policy.orchestrator, profile.policy.mode
    paper_pools = [name for name, pool in pools.items() if pool.paper_pool]
    strategies = {b: s.pool for b, s in _first_per_benchmark(profile.evaluation.strategies, pools).items()}
    cross_validated = _first_per_benchmark(profile.evaluation.goals, pools).values()
    served = served_experts(read("universe.csv")) if (results / "universe.csv").exists() else {}
    written = {
        "claims": lambda: claims_front(read("claims.csv")),
        "claims-detail": lambda: claims_detail(read("claims.csv")),
        "mmlu-table1": lambda: paper_table(read("table1.csv"), paper_counterparts(), pools),
        "mmlu-routers": lambda: router_table(read("table1.csv"), paper_pools),
        "frontier-experts": lambda: single_table(read("table1.csv"), strategies["mmlu"]),
        "frontier-routers": lambda: router_table(read("table1.csv"), [strategies["mmlu"]]),
        "frontier-strategies": lambda: strategy_table(read("strategies.csv"), strategies["mmlu"]),
        "goals": lambda: goal_table(read("goals.csv"), read("table1.csv"), routers, mode),
        "mmlu-pro-routers": lambda: router_table(read("table1.csv"), list(profile.pools_of("mmlu_pro"))),
        "mmlu-pro-experts": lambda: single_table(read("table1.csv"), strategies["mmlu_pro"]),
        "mmlu-pro-strategies": lambda: strategy_table(read("strategies.csv"), strategies["mmlu_pro"]),
        "selfplay-vs-full": lambda: training_set_table(read("selfplay_vs_full.csv"), profile.evaluation.highlight),
        **{
            f"policy-cv-{goal.pool}": lambda goal=goal: cv_table(
                [read(f"bench_policy_cv_{goal.pool}_{goal.budget:g}_{t}.csv") for t in TRAINING_SETS]
            )
            for goal in cross_validated
        },
        **{
            f"signal-{goal.pool}": lambda goal=goal: signal_table(read("policy_signal.csv"), served[goal.pool])
            for goal in cross_validated
        },
        **{name: lambda file=file: file_table(read(file)) for name, file in FILE_TABLES.items()},
    }
    return {name: lambda make=make: _markdown(make()) for name, make in written.items()}


def value(spec: str, results: Path) -> str:
    """One number of prose: ``FILE|QUERY|COLUMN|FORMAT`` (the module's docstring) read from ``results``; the
    query must select exactly one row."""
    try:
        name, query, columns, form = spec.split("|")
    except ValueError:
        raise ValueError(f"value '{spec}' is not FILE|QUERY|COLUMN|FORMAT") from None
    rows = pd.read_csv(results / name).query(query)
    if len(rows) != 1:
        raise ValueError(f"value '{spec}': the query selects {len(rows)} rows of {name}, not one")
    return form.format(*[rows.iloc[0][c.strip()] for c in columns.split(",")])


def fill(text: str, results: Path, profile: Profile) -> str:
    """``text`` with every results block and every prose value rewritten from the files (``tables``, ``value``;
    for profile); an unknown block name is an error."""
    names = {m["name"] for m in BLOCK.finditer(text)}
    writers = tables(results, profile) if names else {}
    unknown = sorted(names - set(writers))
    if unknown:
        raise ValueError(f"README blocks {unknown} name no table; known: {sorted(writers)}")
    written = {name: writers[name]() for name in names}
    text = BLOCK.sub(lambda m: m.group(1) + written[m["name"]] + m.group(3), text)
    return VALUE.sub(lambda m: m.group(1) + value(m["spec"], results) + m.group(3), text)


def pages(root: Path) -> list[Path]:
    """The pages whose blocks ``fill`` writes: the README and every page of docs/."""
    return sorted(path for pattern in PAGES for path in root.glob(pattern))
