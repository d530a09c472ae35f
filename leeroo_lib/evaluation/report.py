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

from ..config import TRAINING_SETS, Profile
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


# Table 1 of the paper beside ours: (our system, pool, budget or None) -> the paper's row (system, cost)
PAPER_TABLE1 = [
    ("mistralai/Mistral-7B-v0.1", "open", None, "Mistral 7B", 0.2),
    ("meta-llama/Llama-2-13b-hf", "open", None, "LLaMa 2 13B", 0.26),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "open", None, "Mixtral 8x7B", 0.6),
    ("meta-llama/Llama-2-70b-hf", "open", None, "LLaMa 2 70B", 0.9),
    ("openai/gpt-4-1106-preview", "mix", None, "GPT4-turbo", 20.0),
    ("leeroo-open", "open", 0.4, "Leeroo (opensource)", 0.4),
    ("leeroo-open", "open", 0.5, "Leeroo (opensource)", 0.5),
    ("leeroo-open", "open", 0.6, "Leeroo (opensource)", 0.6),
    ("leeroo-mix", "mix", 5.0, "Leeroo (mix)", 5.0),
    ("leeroo-mix", "mix", 10.0, "Leeroo (mix)", 10.0),
    ("leeroo-mix", "mix", 15.0, "Leeroo (mix)", 15.0),
    ("Oracle (open)", "open", None, "Oracle (best open model per question)", None),
]


def paper_table(table1: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 and Figure 4 points beside ours on the test split (MMLU)."""
    ours, paper = table1[table1["source"] == "this repo"], table1[table1["source"] == "paper"]
    rows = []
    for system, pool, budget, theirs, cost in PAPER_TABLE1:
        mine = ours[(ours["system"] == system) & (ours["pool"] == pool)]
        mine = mine[mine["budget"] == budget] if budget is not None else mine
        if mine.empty:
            raise ValueError(
                f"Table 1 has no row for {system} in pool '{pool}'"
                + (f" at budget {budget:g}" if budget else "")
                + ": the README reports the cpu profile's results (leeroo report --profile cpu)"
            )
        row = mine.iloc[0]
        match = paper[paper["system"] == theirs]
        match = match[match["cost_per_1m_usd"] == cost] if cost is not None else match
        label = expert_label(system) if budget is None else f"{system}, budget {budget:g}"
        rows.append(
            {
                "system": label if theirs.startswith(("Leeroo", "Oracle")) else f"{label} (paper: {theirs})",
                "cost (USD / 1M tokens)": "-" if pd.isna(row["cost_per_1m_usd"]) else f"{row['cost_per_1m_usd']:.2f}",
                "this repo: accuracy % [95% CI]": percent_with_ci([row["accuracy"]], [row["ci_low"]], [row["ci_high"]])[
                    0
                ],
                "paper: accuracy %": f"{100 * match['accuracy'].iloc[0]:.1f}",
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


def tables(results: Path, profile: Profile) -> dict[str, object]:
    """Every table of the pages by its block name, as a function that writes it from the CSVs under ``results``
    (only the blocks a page shows are read); the profile names the saved orchestrator's policy per
    benchmark (``policy.orchestrator``), its allocation mode (``policy.mode``) and each pool's highlighted budget
    (``evaluation.highlight``)."""

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(results / name)

    routers, mode = profile.policy.orchestrator, profile.policy.mode
    served = served_experts(read("universe.csv")) if (results / "universe.csv").exists() else {}
    written = {
        "claims": lambda: claims_front(read("claims.csv")),
        "claims-detail": lambda: claims_detail(read("claims.csv")),
        "mmlu-table1": lambda: paper_table(read("table1.csv")),
        "mmlu-routers": lambda: router_table(read("table1.csv"), ["open", "mix"]),
        "frontier-experts": lambda: single_table(read("table1.csv"), "frontier"),
        "frontier-routers": lambda: router_table(read("table1.csv"), ["frontier"]),
        "frontier-strategies": lambda: strategy_table(read("strategies.csv"), "frontier"),
        "goals": lambda: goal_table(read("goals.csv"), read("table1.csv"), routers, mode),
        "mmlu-pro-routers": lambda: router_table(read("table1.csv"), ["pro-open", "pro-all"]),
        "mmlu-pro-experts": lambda: single_table(read("table1.csv"), "pro-all"),
        "mmlu-pro-strategies": lambda: strategy_table(read("strategies.csv"), "pro-all"),
        "selfplay-vs-full": lambda: training_set_table(read("selfplay_vs_full.csv"), profile.evaluation.highlight),
        **{
            f"policy-cv-{pool}": lambda pool=pool: cv_table(
                [read(f"bench_policy_cv_{pool}_0.6_{t}.csv") for t in TRAINING_SETS]
            )
            for pool in ("open", "pro-open")
        },
        **{
            f"signal-{pool}": lambda pool=pool: signal_table(read("policy_signal.csv"), served[pool])
            for pool in ("open", "pro-open")
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
