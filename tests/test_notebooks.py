"""The notebooks as `make reproduce` runs them: papermill, `-p profile smoke`, in the Makefile's order, into a fresh
folder ($LEEROO_OUTPUT_DIR), so nothing cached from an earlier run can stand in for the work. Each notebook is then
checked for one result against the value it must give, and every executed cell for a readable number of outputs
(library chatter goes to log files, one progress bar per long step)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.config import OUTPUT_DIR_ENV, PROFILE_ENV, ROOT, load_endpoints, load_profile
from leeroo_lib.evaluation.claims import VERDICTS, verdict
from leeroo_lib.evaluation.policy_cv import CANDIDATES, cross_validate
from leeroo_lib.serving.ledger import LEDGER_PATH

NOTEBOOKS = [
    "01_expert_scoring",
    "02_universe",
    "03_selfplay",
    "04_policy",
    "05_mmlu_eval",
    "06_figures",
    "08_claims",
    "07_serving",
]
MAX_OUTPUTS_PER_CELL = 6  # a table, a plot and a few progress bars; lm-eval's chatter once made it hundreds


@pytest.fixture(scope="module")
def run(tmp_path_factory, share_with_nbval):
    """Every notebook executed in order into one fresh output folder: name -> (executed notebook, output root).
    The nbval pass of the same session then runs over that folder (conftest.py)."""
    root = tmp_path_factory.mktemp("smoke_run")
    env = {**os.environ, OUTPUT_DIR_ENV: str(root), PROFILE_ENV: "smoke"}
    executed = {}
    for name in NOTEBOOKS:
        out = root / "notebooks" / f"{name}.ipynb"
        out.parent.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "papermill", f"notebooks/{name}.ipynb", str(out), "-p", "profile", "smoke"]
        done = subprocess.run(
            [*command, "--cwd", "notebooks", "--no-progress-bar"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"{name} failed:\n{done.stderr[-4000:]}"
        executed[name] = json.loads(out.read_text())
    share_with_nbval(root)
    return executed, root


def test_every_executed_cell_reads_cleanly(run):
    executed, _ = run
    crowded = {
        (name, i): len(cell["outputs"])
        for name, notebook in executed.items()
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and len(cell["outputs"]) > MAX_OUTPUTS_PER_CELL
    }
    assert not crowded, f"cells with more than {MAX_OUTPUTS_PER_CELL} outputs (notebook, cell): {crowded}"
    errors = [
        name
        for name, notebook in executed.items()
        for cell in notebook["cells"]
        for output in cell.get("outputs", [])
        if output["output_type"] == "error"
    ]
    assert not errors


def test_01_scores_the_live_expert(run):
    _, root = run
    scores = pd.read_parquet(root / "data" / "score_matrix.parquet")
    live = scores["SmolLM2-135M-Instruct (live)"].dropna()
    assert len(live) == 30  # 10 questions in each of the profile's three subjects
    assert live.mean() == pytest.approx(EXPECTED["live accuracy"], abs=0.034)  # one question's worth
    bias = pd.read_csv(root / "results" / "live_bias.csv").iloc[0]
    assert bias["n_questions"] == 30 and bias[["share_A", "share_B", "share_C", "share_D"]].sum() == pytest.approx(1)
    duplicates = pd.read_csv(root / "results" / "duplicates.csv")
    assert duplicates.groupby("benchmark")["split_pair"].size().to_dict() == {"mmlu": 3, "mmlu_pro": 3}


def test_02_serves_the_universe_of_the_training_split(run):
    _, root = run
    universe = pd.read_csv(root / "results" / "universe.csv")
    open_pool = universe[(universe["pool"] == "open") & (universe["served"] == 1)].sort_values("k")
    assert open_pool["expert"].iloc[0] == EXPECTED["open universe, first"]


def test_03_writes_both_training_sets(run):
    _, root = run
    selfplay = pd.read_parquet(root / "data" / "selfplay" / "selfplay_training_set.parquet")
    full = pd.read_parquet(root / "data" / "selfplay" / "training_set.parquet")
    assert len(selfplay) == 600  # selfplay.training: 300 questions of each benchmark, every one asked
    assert selfplay.index.isin(full.index).all()
    assert selfplay.notna().sum().sum() < 0.5 * full.loc[selfplay.index, selfplay.columns].notna().sum().sum()


def test_03_measures_learning_curves_with_seeds_and_a_new_expert_mid_loop(run):
    _, root = run
    curve = pd.read_csv(root / "results" / "selfplay_curve.csv")
    strategies = {"full-information", "uniform", "epsilon-greedy", "epsilon-greedy-selection"}
    assert set(curve["pool"]) == {"pro-open", "open"} and set(curve["strategy"]) == strategies
    assert (curve.groupby(["pool", "strategy"])["seed"].nunique() == 2).all()  # selfplay.seeds on smoke
    goals = pd.read_csv(root / "results" / "selfplay_goals.csv")
    budgeted = goals[goals["strategy"] != "full-information"]
    assert (budgeted["evaluations_share"] <= 0.05 + 0.01).all()  # selfplay.max_evaluation_share: the loop stops
    joined = pd.read_csv(root / "results" / "selfplay_new_expert.csv")
    assert len(joined) == 2 and set(joined["loop_decision"]) <= {"serve", "refuse"}
    assert (joined["new_expert_evaluations"] <= 60).all() and joined["matches"].all()  # new_expert.max_evaluations


def test_the_run_embeds_each_question_once(run):
    """Self-play, every policy, the strategies and the hidden checks share one cache of sentence embeddings: across
    the whole run, no question (its qkey is its text's) is embedded twice."""
    _, root = run
    chunks = sorted((root / "data" / "embeddings").rglob("chunk_*.npz"))
    keys = pd.Series([key for chunk in chunks for key in np.load(chunk)["qkey"].tolist()])
    assert len(chunks) and len(keys) > 600  # every training and test question some policy of the smoke run reads
    assert not keys.duplicated().any(), f"embedded more than once: {keys[keys.duplicated()].head().tolist()}"


def test_04_measures_the_goal_against_its_reference(run):
    _, root = run
    goals = pd.read_csv(root / "results" / "goals.csv")
    paper_goal = goals[(goals["pool"] == "open") & (goals["budget"] == 0.6)]
    assert paper_goal["reference_accuracy"].iloc[0] == pytest.approx(EXPECTED["Mixtral on the open goal's questions"])
    stacked = paper_goal[(paper_goal["router"] == "leeroo-stacked") & (paper_goal["mode"] == "global")].iloc[0]
    n = stacked["n_questions"]  # a router worse by more than two questions fails (two: float noise across CPUs)
    assert stacked["accuracy"] == pytest.approx(EXPECTED["stacked router on the open goal"], abs=2.01 / n)
    assert stacked["mean cost"] <= 0.6
    assert (root / "models" / "orchestrator").is_dir() and (root / "models" / "orchestrator_compared").is_dir()


def test_05_table1_holds_both_orchestrators(run):
    _, root = run
    table1 = pd.read_csv(root / "results" / "table1.csv")
    mixtral = table1[(table1["system"] == "mistralai/Mixtral-8x7B-Instruct-v0.1") & (table1["pool"] == "open")]
    assert mixtral["accuracy"].iloc[0] == pytest.approx(EXPECTED["Mixtral in Table 1"])
    routers = table1[table1["kind"].isin(["leeroo", "leeroo-compared"])]
    assert set(routers["trained_on"]) == {"selfplay", "full"}
    assert (routers["training_evaluations"] > 0).all()
    assert set(routers["allocation"]) == {"global"}  # the profile's policy.mode
    saved = routers[(routers["kind"] == "leeroo") & (routers["budget"] == 0.6)].set_index("pool")
    for pool in ("open", "pro-open"):  # the saved orchestrator (stacked on MMLU, mf on MMLU-Pro), within two questions
        n = saved.loc[pool, "n_questions"]
        assert saved.loc[pool, "accuracy"] == pytest.approx(EXPECTED[f"leeroo-{pool} at 0.6"], abs=2.01 / n)
    goals = pd.read_csv(root / "results" / "strategy_goals.csv")
    assert goals[["pool", "price_share"]].values.tolist() == [["frontier", 0.25], ["frontier", 0.5]]
    tokens = pd.read_csv(root / "results" / "mmlu_pro_prompt_tokens.csv")
    assert len(tokens) == 14 and (tokens["cot_prefix_tokens"] > 5 * tokens["question_tokens"]).all()
    coverage = pd.read_csv(root / "results" / "coverage.csv").query("subcategory == 'all'").set_index("pool")
    assert coverage.loc["open", "share"] == 1.0 and coverage.loc["live", "judged"] == 5  # SmolLM2: 30 questions


def test_06_draws_the_figures_and_sums_up_the_highlighted_budget(run):
    executed, root = run
    for name in ("fig4_accuracy_vs_cost", "fig5_subcategories", "fig6_routing_distribution", "universe_curve"):
        assert (root / "figures" / f"{name}.png").stat().st_size > 10_000
    summary = "".join(executed["06_figures"]["cells"][-1]["outputs"][0]["data"]["text/plain"])
    assert "open @ 0.6" in summary  # evaluation.highlight: the first pool at its budget
    accuracy = float(summary.split("accuracy % [95% CI]")[1].split()[0])
    assert accuracy == pytest.approx(100 * EXPECTED["leeroo-open at 0.6"], abs=100 * 2.01 / 200)


def test_08_decides_each_claim(run):
    _, root = run
    claims = pd.read_csv(root / "results" / "claims.csv").set_index(["id", "benchmark"])
    assert {f"C{i}" for i in range(1, 14)} <= set(claims.index.get_level_values("id"))
    assert set(claims["verdict"]) <= set(VERDICTS)
    on_par = claims.loc[("C1", "mmlu")]  # the smoke profile's goal: open at 0.4 against Mixtral
    assert on_par["ci_low"] <= on_par["measured"] <= on_par["ci_high"]
    assert on_par["verdict"] == verdict("within", on_par["ci_low"], on_par["ci_high"], margin=1.0)
    assert on_par["redrawn_splits"].endswith("of 2")  # evaluation.redraw: two seeds on smoke
    assert "no per-question record of gpt-3.5" in claims.loc[("C4", "mmlu"), "reason"]


def test_the_cross_validation_reads_what_notebooks_01_to_03_wrote_and_never_the_test_split(run, monkeypatch):
    _, root = run
    monkeypatch.setenv(OUTPUT_DIR_ENV, str(root))
    path = cross_validate(load_profile("smoke"), folds=2, goal_number=1, train_on="full")  # pro-open at 0.6
    table = pd.read_csv(path).set_index("policy")
    assert list(table.index) == CANDIDATES and (table["pool"] == "pro-open").all()
    assert table["auc"].between(0, 1).all() and (table["auc"] > 0.5).any()  # some policy reads the questions
    splits = pd.read_csv(root / "data" / "splits" / "splits.csv")
    assert table["judged_rows"].iloc[0] <= (splits["split"] == "train").sum()


def test_07_answers_through_the_service_within_its_budget_and_counts_what_each_answer_cost(run):
    executed, root = run
    printed = "".join(
        "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
        for cell in executed["07_serving"]["cells"]
        for output in cell.get("outputs", [])
    )
    assert EXPECTED["07 prints"] in printed
    with sqlite3.connect(root / LEDGER_PATH) as ledger:
        spent = pd.read_sql("SELECT * FROM requests ORDER BY rowid", ledger)
    service = load_endpoints("smoke").service
    # 3 questions at an ample budget, 2 windows of the stream, 1 at a request's own budget; the one below the
    # cheapest expert is refused before it reaches one
    assert len(spent) == 3 + 2 * service.window + 1 and (spent["outcome"] == "answered").all()
    tokens = spent["prompt_tokens"] + spent["completion_tokens"]
    assert (spent["cost_units"] == tokens * spent["price_units"]).all() and (tokens > 0).all()
    stream = spent["price_units"].iloc[3 : 3 + 2 * service.window] / 1e6  # USD per 1M tokens
    assert (stream.rolling(service.window, min_periods=1).mean() <= service.budget + 1e-9).all()


# What the smoke profile's notebooks give (recorded results and a seeded split; the live score is the one
# number a model computes here).
EXPECTED = {
    "live accuracy": 8 / 30,
    "open universe, first": "meta-llama/Llama-2-70b-hf",
    "Mixtral on the open goal's questions": 34 / 45,
    "Mixtral in Table 1": 0.71,
    "stacked router on the open goal": 24 / 45,
    "leeroo-open at 0.6": 0.595,  # of 200 test questions
    "leeroo-pro-open at 0.6": 0.56,  # of 200
    "07 prints": "/v1: stopped",  # each expert server it started, stopped by the notebook
}
