"""An interactive view of the results (notebook 06): choose a pool, move a budget slider over the budgets it
was routed at, and read what Leeroo scored there, what it spent, the best single expert it beat or not, the
zero router, and where its queries went by expert size. It reads results/table1.csv and
results/routing_distribution.csv only; ``budget_summary`` is the same view as a plain table (what a
headless run, papermill or nbval, keeps).
"""

from __future__ import annotations

import pandas as pd

from .tables import table1_for_reading


def pool_budgets(table1: pd.DataFrame, pool: str) -> list[float]:
    """The budgets Leeroo was routed at in ``pool`` (notebook 05)."""
    rows = table1[(table1["kind"] == "leeroo") & (table1["pool"] == pool)]
    if rows.empty:
        raise ValueError(
            f"no Leeroo row for pool '{pool}' in Table 1; its pools: {sorted(set(table1['pool'].dropna()))}"
        )
    return [float(b) for b in sorted(rows["budget"].unique())]


def budget_summary(table1: pd.DataFrame, distribution: pd.DataFrame, pool: str, budget: float) -> pd.DataFrame:
    """Leeroo in ``pool`` at ``budget``: accuracy, spend, the best single expert it affords and the zero router
    (paired differences with 95% intervals), and the share of its queries per size class, as one column."""
    rows = table1[(table1["kind"] == "leeroo") & (table1["pool"] == pool) & (table1["budget"] == budget)]
    if rows.empty:
        raise ValueError(f"pool '{pool}' was not routed at budget {budget}: choose one of {pool_budgets(table1, pool)}")
    row, readable = rows.iloc[0], table1_for_reading(rows).iloc[0]
    shares = distribution[(distribution["pool"] == pool) & (distribution["budget"] == budget)]
    view = {
        "accuracy % [95% CI]": readable["accuracy % [95% CI]"],
        "spent (USD / 1M tokens)": f"{row['cost_per_1m_usd']:.3f}",
        "best single expert it affords": str(row["best_single_at_cost"]).split("/")[-1],
        "vs it, points [95% CI]": readable["difference, points [95% CI]"],
        "zero router (best mix of two)": row["zero_router_mix"],
        "vs the zero router, points [95% CI]": readable["vs zero router, points [95% CI]"],
        **{f"queries to {c}": f"{s:.0%}" for c, s in zip(shares["size_class"], shares["share"]) if s > 0},
    }
    return pd.Series(view, name=f"{pool} @ {budget:g}").to_frame()


def budget_view(table1: pd.DataFrame, distribution: pd.DataFrame, pool: str | None = None):
    """A pool dropdown and a budget slider; the table below them follows (``budget_summary``)."""
    import ipywidgets as widgets
    from IPython.display import display

    pools = list(dict.fromkeys(table1.loc[table1["kind"] == "leeroo", "pool"]))
    choose_pool = widgets.Dropdown(options=pools, value=pool or pools[0], description="pool")
    choose_budget = widgets.SelectionSlider(
        options=pool_budgets(table1, choose_pool.value), description="budget", continuous_update=False
    )
    shown = widgets.Output()

    def show(*_):
        with shown:
            shown.clear_output(wait=True)
            display(budget_summary(table1, distribution, choose_pool.value, choose_budget.value))

    def new_pool(change):
        choose_budget.options = pool_budgets(table1, change.new)
        show()

    choose_pool.observe(new_pool, "value")
    choose_budget.observe(show, "value")
    show()
    return widgets.VBox([widgets.HBox([choose_pool, choose_budget]), shown])
