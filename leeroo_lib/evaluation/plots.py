"""One function per figure; each returns the matplotlib Figure and, given a path, saves it as PNG."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from adjustText import adjust_text

from ..config import Pool
from ..data.suites import paper_counterparts
from ..experts.catalog import expert_label
from .aiq import non_decreasing_hull


def _save(fig, path: Path | None):
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def plot_expert_accuracy(table: pd.DataFrame, path: Path | None = None):
    """Accuracy of each expert against its price (log scale), coloured by size class, one panel per
    benchmark (``experts.catalog.accuracy_table``)."""
    benchmarks = list(dict.fromkeys(table["benchmark"]))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(7 * len(benchmarks), 5), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        rows = table[table["benchmark"] == benchmark]
        for size_class, group in rows.groupby("size_class", sort=False):
            ax.scatter(group["cost_per_1m_usd"], group["accuracy"], label=size_class, s=40)
        for r in rows.itertuples():
            ax.annotate(
                _label(r.expert), (r.cost_per_1m_usd, r.accuracy), fontsize=6, xytext=(4, 2), textcoords="offset points"
            )
        ax.set_xscale("log")
        ax.set_xlabel("cost (USD per 1M tokens, log scale)")
        ax.set_ylabel(f"{benchmark} accuracy (own covered questions)")
        ax.legend(title="size class", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


SIZE_COLORS = {
    "7B": "tab:blue",
    "13B": "tab:green",
    "34B+": "tab:orange",
    "GPT4": "tab:red",
    "frontier-small": "tab:olive",
    "frontier": "tab:purple",
    "tiny (live)": "tab:gray",
    "<7B": "tab:cyan",
}


def _label(system: str) -> str:
    """``expert_label``, shorter still among a figure's crowded points: on MMLU without release suffixes (kept
    on MMLU-Pro, where a base and an instruct model both run)."""
    name = expert_label(system)
    return (
        name if str(system).endswith(" (MMLU-Pro)") else re.sub(r"-(Instruct|hf|v0\.1|v1\.5|1106-preview)\b", "", name)
    )


def plot_accuracy_vs_cost(table1: pd.DataFrame, pools: dict[str, Pool], path: Path | None = None):
    """Figure 4: accuracy against cost, one panel per pool (titled as ``pools`` title it); its served experts alone
    as points, our router as a curve with its 95% interval (dashed: the same policies on the other training set),
    the paper's Leeroo points overlaid on the pool that stands for the paper's (``paper_pool``,
    data/paper_counterparts.csv)."""
    ours = table1[table1["source"] == "this repo"]
    paper = table1[table1["source"] == "paper"]
    leeroo = paper_counterparts().query("kind == 'leeroo'")
    paper_systems = dict(zip(leeroo["paper_pool"], leeroo["paper_system"]))  # paper pool -> its Leeroo row's name
    panels = list(dict.fromkeys(ours.loc[ours["kind"] == "leeroo", "pool"]))
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, min(2, len(panels)), figsize=(12, 4.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, pool in zip(axes.flat, panels):
        pool_singles = ours[(ours["kind"] == "single") & (ours["pool"] == pool)]
        ax.scatter(
            pool_singles["cost_per_1m_usd"],
            pool_singles["accuracy"],
            color="grey",
            s=30,
            label="served experts alone (this repo)",
        )
        # the zero router: the best random mix of two experts, linear in cost (drawn densely on the log axis)
        x, y = non_decreasing_hull(pool_singles["cost_per_1m_usd"].to_numpy(), pool_singles["accuracy"].to_numpy())
        dense = np.geomspace(x[0], x[-1], 200) if len(x) > 1 else x
        ax.plot(dense, np.interp(dense, x, y), ls="--", lw=1, color="grey", label="zero router (best mix of two)")
        # label the best expert of each price; adjust_text (below) moves the labels off each other
        labels = []
        for cost, tier in pool_singles.groupby("cost_per_1m_usd"):
            best = tier.loc[tier["accuracy"].idxmax()]
            more = f" (+{len(tier) - 1} at this price)" if len(tier) > 1 else ""
            labels.append(ax.text(cost, best["accuracy"], _label(best["system"]) + more, fontsize=6, color="dimgrey"))
        routers = ours[(ours["pool"] == pool) & ours["kind"].isin(["leeroo", "leeroo-compared"])]
        for kind, rows in routers.groupby("kind"):
            rows = rows.sort_values("cost_per_1m_usd")
            style = {"ls": "--", "marker": "s"} if kind == "leeroo-compared" else {"marker": "o"}
            label = f"leeroo-{pool}, trained on {rows['trained_on'].iloc[0]}"
            (line,) = ax.plot(rows["cost_per_1m_usd"], rows["accuracy"], ms=4, label=label, **style)
            ax.fill_between(
                rows["cost_per_1m_usd"], rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.15
            )
        oracle = ours[(ours["pool"] == pool) & (ours["kind"] == "oracle")]
        for r in oracle.itertuples():
            ax.axhline(r.accuracy, color="black", ls=":", lw=1, label=f"oracle ({pool}, this repo)")
        if pools[pool].paper_pool in paper_systems:
            system = paper_systems[pools[pool].paper_pool]
            theirs = paper[paper["system"] == system].drop_duplicates("cost_per_1m_usd")
            ax.scatter(
                theirs["cost_per_1m_usd"],
                theirs["accuracy"],
                marker="x",
                s=60,
                color="crimson",
                label=f"{system} (paper)",
                zorder=5,
            )
        ax.set_xscale("log")
        ax.set_title(pools[pool].title)
        ax.set_xlabel("mean cost (USD per 1M tokens, log scale)")
        ax.set_ylabel("accuracy (test split)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        adjust_text(labels, ax=ax, arrowprops={"arrowstyle": "-", "color": "lightgrey", "lw": 0.5})
    fig.tight_layout()
    return _save(fig, path)


def plot_subcategories(subcategories: pd.DataFrame, path: Path | None = None):
    """Figure 5: accuracy per sub-category, one bar per system with its 95% interval, one panel per
    benchmark (``evaluate.subcategory_accuracy`` rows with a ``benchmark`` column)."""
    benchmarks = list(dict.fromkeys(subcategories["benchmark"]))
    fig, axes = plt.subplots(len(benchmarks), 1, figsize=(12, 4.8 * len(benchmarks)), squeeze=False)
    for ax, benchmark in zip(axes[:, 0], benchmarks):
        rows = subcategories[subcategories["benchmark"] == benchmark].dropna(axis=1, how="all")
        systems = [c for c in rows.columns if c not in ("n_questions", "benchmark") and "_ci_" not in c]
        ordered = rows.sort_values(systems[0])
        width = 0.8 / len(systems)
        x = np.arange(len(ordered))
        for i, system in enumerate(systems):
            errors = [ordered[system] - ordered[f"{system}_ci_low"], ordered[f"{system}_ci_high"] - ordered[system]]
            bars = {"yerr": errors, "capsize": 1.5, "error_kw": {"lw": 0.6, "alpha": 0.6}}
            ax.bar(x + i * width, ordered[system], width=width, label=system, **bars)
        ax.set_xticks(x + width * (len(systems) - 1) / 2)
        ax.set_xticklabels(
            [f"{s} ({n})" for s, n in zip(ordered.index, ordered["n_questions"])], rotation=40, ha="right", fontsize=8
        )
        ax.set_ylabel("accuracy (test split), 95% CI")
        ax.set_title(f"{benchmark}: per sub-category (questions in brackets)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_routing_distribution(
    distribution: pd.DataFrame, served: dict[str, str] | None = None, path: Path | None = None
):
    """Figure 6: share of queries per expert size class at each budget tier; ``served`` (pool ->
    its served experts, as text) is listed under the bars."""
    table = distribution.pivot_table(index=["pool", "budget"], columns="size_class", values="share", sort=False)
    table = table.reindex(pd.MultiIndex.from_frame(distribution[["pool", "budget"]].drop_duplicates()))
    table = table.fillna(0.0).loc[:, lambda t: t.sum() > 0]  # a class of another benchmark: none of it
    fig, ax = plt.subplots(figsize=(12, 4.5))
    bottom = pd.Series(0.0, index=table.index)
    labels = [f"{pool}-{budget:g}$" for pool, budget in table.index]
    for size_class in table.columns:
        ax.bar(labels, table[size_class], bottom=bottom, label=size_class, color=SIZE_COLORS.get(size_class))
        bottom += table[size_class]
    ax.set_ylabel("share of test queries")
    ax.set_xlabel("pool and budget (USD per 1M tokens; what each spent, at most this, is in Table 1)")
    ax.tick_params(axis="x", rotation=45)
    ax.legend(title="size class", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if served:
        caption = "\n".join(
            f"{pool} serves: {', '.join(expert_label(e) for e in experts.split(', '))}"
            for pool, experts in served.items()
        )
        fig.text(0.01, -0.02, caption, fontsize=7, va="top", wrap=True)
    fig.tight_layout()
    return _save(fig, path)


def plot_universe_curve(
    universe: pd.DataFrame, oracles: pd.DataFrame, chance: dict[str, np.ndarray], path: Path | None = None
):
    """S(U) on the training questions against k for the greedy universe of each pool (its served
    experts, ``results/universe.csv``), one panel per benchmark (``chance``: benchmark -> the chance that
    one of k independent uniform guessers is right, k = 1, 2, ...; ``universe`` has a ``benchmark``
    column), with each pool's oracle and, on MMLU, the paper's oracle."""
    served = universe[universe["served"] == 1]
    fig, axes = plt.subplots(1, len(chance), figsize=(6.5 * len(chance), 4.5), squeeze=False)
    oracle = oracles.set_index("pool")["oracle_S"]
    styles = ["o-", "s--", "^-.", "D:", "v-", "P--"]
    for ax, (benchmark, guess) in zip(axes[0], chance.items()):
        rows = served[served["benchmark"] == benchmark]
        for style, (pool, table) in zip(styles, rows.groupby("pool", sort=False)):
            (line,) = ax.plot(table["k"], table["S_train"], style, ms=5, label=f"greedy, {pool} pool")
            ax.axhline(oracle[pool], color=line.get_color(), ls=line.get_linestyle(), lw=1, alpha=0.6)
        if benchmark == "mmlu":
            ax.axhline(oracles["oracle_S"].iloc[-1], color="grey", lw=1, label="paper's oracle (~98%)")
        ks = np.arange(1, len(guess) + 1)
        ax.plot(ks, guess, ls=":", color="black", label="chance: one of k uniform guessers right")
        ax.set_title(f"{benchmark}: thin lines are each pool's oracle (all its experts)")
        ax.set_xlabel("k (experts in the universe)")
        ax.set_ylabel("S(U): share of training questions some expert gets right")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_training_curves(histories: dict[str, pd.DataFrame], path: Path | None = None):
    """Policy training: train and validation loss (masked BCE) per epoch, one panel per policy."""
    fig, axes = plt.subplots(1, len(histories), figsize=(4.5 * len(histories), 3.5), squeeze=False)
    for ax, (name, history) in zip(axes[0], histories.items()):
        history.plot(x="epoch", y=["train_loss", "val_loss"], ax=ax, marker="o", title=name)
        ax.set_ylabel("masked BCE")
    return _save(fig, path)


def plot_reliability(probas: dict[str, pd.DataFrame], outcomes: pd.DataFrame, path: Path | None = None):
    """Reliability diagram: observed accuracy against predicted chance of success (deciles of the
    prediction), all experts pooled, over the questions where the outcome is known."""
    from sklearn.calibration import calibration_curve

    observed_all = outcomes.to_numpy().ravel()
    known = ~pd.isna(observed_all)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, proba in probas.items():
        observed, predicted = calibration_curve(
            observed_all[known], proba[outcomes.columns].to_numpy().ravel()[known], n_bins=10, strategy="quantile"
        )
        ax.plot(predicted, observed, marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="predicted chance of success", ylabel="observed accuracy", title="reliability (test split)")
    ax.legend()
    return _save(fig, path)


def plot_router_curves(
    curves: pd.DataFrame, singles: pd.DataFrame, pools: dict[str, list[str]], path: Path | None = None
):
    """Test accuracy against mean cost for every router (rows: router, pool, cost, accuracy), one
    panel per pool, single experts (index: expert; cost, accuracy) as points, the oracle dashed."""
    fig, axes = plt.subplots(1, len(pools), figsize=(max(13, 4.5 * len(pools)), 4.5), squeeze=False)
    for ax, (pool, members) in zip(axes[0], pools.items()):
        for router, curve in curves[curves["pool"] == pool].groupby("router", sort=False):
            style = dict(linestyle="--", color="black") if router == "oracle" else dict(marker=".")
            ax.plot(curve["cost"], curve["accuracy"], label=router, **style)
        ax.scatter(
            singles.loc[members, "cost"], singles.loc[members, "accuracy"], color="grey", s=15, label="single experts"
        )
        ax.set(xscale="log", xlabel="mean cost (USD per 1M tokens)", ylabel="test accuracy", title=f"pool: {pool}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_policy_signal(summary: pd.DataFrame, path: Path | None = None):
    """Mean AUC over a pool's experts, overall and within subject, one bar pair per policy and one panel
    per pool (``summary``: columns pool, policy, auc, auc_within_subject); 0.5 is no signal."""
    pools = list(dict.fromkeys(summary["pool"]))
    values = summary[["auc", "auc_within_subject"]].to_numpy()
    low, high = min(0.45, np.nanmin(values) - 0.02), max(0.55, np.nanmax(values) + 0.02)
    fig, axes = plt.subplots(1, len(pools), figsize=(4.5 * len(pools), 4), squeeze=False)
    for ax, pool in zip(axes[0], pools):
        rows = summary[summary["pool"] == pool].set_index("policy")[["auc", "auc_within_subject"]]
        rows.rename(columns={"auc_within_subject": "within subject"}).plot.barh(ax=ax, legend=False)
        ax.axvline(0.5, color="grey", linestyle=":")
        ax.set(title=f"{pool}: mean over served experts", xlabel="AUC of P(success)", ylabel="", xlim=(low, high))
        ax.invert_yaxis()
    axes[0][0].legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def plot_selfplay_curves(bands: pd.DataFrame, lines: dict[str, dict], path: Path | None = None):
    """Self-play learning curves, one panel per pool: mean test accuracy against expert evaluations spent, a 95%
    band over seeds per strategy (``selfplay_study.curve_bands``), the best single expert and full information's
    final accuracy as lines (``lines``: pool -> what ``learning_curves`` returned beside its curve)."""
    pools = list(dict.fromkeys(bands["pool"]))
    fig, axes = plt.subplots(1, len(pools), figsize=(6.5 * len(pools), 4.5), squeeze=False)
    for ax, pool in zip(axes[0], pools):
        rows = bands[bands["pool"] == pool]
        for strategy, curve in rows.groupby("strategy", sort=False):
            (line,) = ax.plot(curve["evaluations"], curve["accuracy"], marker="o", ms=4, label=strategy)
            ax.fill_between(
                curve["evaluations"], curve["accuracy_low"], curve["accuracy_high"], color=line.get_color(), alpha=0.15
            )
        expert, single = lines[pool]["best_single_expert"]
        ax.axhline(single, color="black", ls=":", lw=1, label=f"best single expert ({_label(expert)})")
        ax.axhline(
            lines[pool]["full_information_accuracy"],
            color="black",
            ls="--",
            lw=1,
            label=f"full information, all {lines[pool]['full_information_evaluations']:,} evaluations",
        )
        seeds = int(rows["n_seeds"].max())
        ax.set(
            xscale="log",
            xlabel="expert evaluations spent",
            ylabel=f"test accuracy at budget {rows['budget'].iloc[0]:g}",
            title=f"{pool}: mean and 95% interval over {seeds} seeds",
        )
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
