"""The claims ledger: the verdict rules on hand-made intervals, and the ledger read from hand-made results files."""

from __future__ import annotations

import pandas as pd
import pytest

from leeroo_lib.config import load_profile
from leeroo_lib.evaluation.claim_evidence import memory_4bit, oracle_gain, oracle_price
from leeroo_lib.evaluation.claims import VERDICTS, claims_table, load_claims, verdict
from leeroo_lib.experts.catalog import Expert


@pytest.mark.parametrize(
    ("low", "high", "paper", "expected"),
    [
        (0.5, 6.0, 5.27, "holds"),  # above zero, reaches the paper's number
        (0.5, 5.27, 5.27, "holds"),  # reaches it exactly
        (0.5, 3.0, 5.27, "holds, smaller"),  # above zero, short of the paper's number
        (0.0, 3.0, 5.27, "does not hold"),  # touches zero
        (-0.9, 3.2, 5.27, "does not hold"),
        (-3.0, -1.0, 5.27, "does not hold"),
        (0.1, 0.2, None, "holds"),  # the paper gives no size: above zero is enough
        (0.1, 0.2, float("nan"), "holds"),
        (-0.1, 0.2, None, "does not hold"),
    ],
)
def test_greater_reads_the_interval_against_zero_and_the_paper(low, high, paper, expected):
    assert verdict("greater", low, high, paper) == expected


@pytest.mark.parametrize(
    ("low", "high", "margin", "expected"),
    [
        (-0.9, 2.0, 1.0, "holds"),
        (-1.0, 2.0, 1.0, "holds"),  # exactly at the margin
        (-1.1, 2.0, 1.0, "does not hold"),
        (-2.0, -1.6, 1.52, "does not hold"),
        (-1.5, -0.2, 1.52, "holds"),
        (0.0, 0.0, 0.0, "holds"),
    ],
)
def test_within_reads_the_low_end_against_the_margin(low, high, margin, expected):
    assert verdict("within", low, high, margin=margin) == expected


def test_agrees_holds_only_when_every_decision_agrees():
    assert verdict("agrees", 1.0, 1.0) == "holds"
    assert verdict("agrees", 0.5, 0.5) == "does not hold"


def test_bad_rules_are_named():
    with pytest.raises(ValueError, match="unknown kind of claim 'bigger'"):
        verdict("bigger", 0, 1)
    with pytest.raises(ValueError, match="interval \\[2, 1\\] is empty"):
        verdict("greater", 2, 1)
    with pytest.raises(ValueError, match="needs a margin"):
        verdict("within", -1, 1)


def test_the_ledger_holds_the_papers_claims():
    claims = load_claims()
    assert {f"C{i}" for i in range(1, 14)} <= set(claims["id"])
    assert set(claims[claims["benchmark"] == "mmlu_pro"]["id"]) >= {"C1", "C2", "C3", "C5", "C6"}
    assert claims["claim"].str.len().le(120).all()  # short quotes


def _claims(rows: list[dict]) -> pd.DataFrame:
    base = {"where": "Table 1", "unit": "points", "margin": float("nan"), "budget": float("nan"), "reference": ""}
    return pd.DataFrame([base | row for row in rows])


def test_the_ledger_decides_from_the_files_and_says_what_it_cannot(tmp_path):
    profile = load_profile("smoke")
    router = profile.policy.orchestrator["mmlu"]
    pd.DataFrame(
        [
            {
                "router": router,
                "mode": profile.policy.mode,
                "pool": "open",
                "budget": 0.6,
                "reference": "mistralai/Mixtral-8x7B-Instruct-v0.1",
                "points over reference": 1.2,
                "CI low": -0.9,
                "CI high": 3.2,
                "accuracy": 0.70,
                "reference_accuracy": 0.69,
                "mean cost": 0.59,
                "n_questions": 2074,
                "goal": "open @0.6 vs Mixtral",
            },
            {  # the other mode: never read for a profile in global mode
                "router": router,
                "mode": "sequential",
                "pool": "open",
                "budget": 0.6,
                "reference": "mistralai/Mixtral-8x7B-Instruct-v0.1",
                "points over reference": 9.0,
                "CI low": 8.0,
                "CI high": 10.0,
                "accuracy": 0.78,
                "reference_accuracy": 0.69,
                "mean cost": 0.59,
                "n_questions": 2074,
                "goal": "open @0.6 vs Mixtral",
            },
        ]
    ).to_csv(tmp_path / "goals.csv", index=False)
    claims = _claims(
        [
            {
                "id": "C2",
                "benchmark": "mmlu",
                "claim": "beats Mixtral",
                "paper_value": 5.27,
                "kind": "greater",
                "decided_by": "goal",
                "pool": "open",
                "budget": 0.6,
                "reference": "mistralai/Mixtral-8x7B-Instruct-v0.1",
            },
            {
                "id": "C1",
                "benchmark": "mmlu",
                "claim": "on par",
                "paper_value": 0.01,
                "kind": "within",
                "margin": 1.0,
                "decided_by": "goal",
                "pool": "open",
                "budget": 0.4,
                "reference": "mistralai/Mixtral-8x7B-Instruct-v0.1",
            },
            {
                "id": "C4",
                "benchmark": "mmlu",
                "claim": "GPT-3.5",
                "paper_value": float("nan"),
                "kind": "within",
                "margin": 1.0,
                "decided_by": "record",
                "pool": "open",
                "budget": 0.4,
                "reference": "gpt-3.5",
            },
            {
                "id": "C11",
                "benchmark": "mmlu",
                "claim": "greedy",
                "paper_value": 0.0,
                "kind": "within",
                "margin": 1.0,
                "decided_by": "greedy_vs_exact",
                "pool": float("nan"),
            },
            {
                "id": "C5",
                "benchmark": "mmlu",
                "claim": "mix",
                "paper_value": -1.52,
                "kind": "within",
                "margin": 1.52,
                "decided_by": "goal",
                "pool": "nowhere",
                "budget": 10,
                "reference": "openai/gpt-4-1106-preview",
            },
        ]
    )
    table = claims_table(claims, tmp_path, profile).set_index("id")
    assert set(table["verdict"]) <= set(VERDICTS)
    assert table.loc["C2", "verdict"] == "does not hold"  # [-0.9, +3.2] reaches zero (global mode, not sequential)
    assert table.loc["C2", "measured"] == pytest.approx(1.2)
    assert table.loc["C2", "evidence"].startswith("results/goals.csv")
    assert table.loc["C2", "notebook"] == "notebooks/04_policy.ipynb"
    assert table.loc["C1", "verdict"] == "not testable here"
    assert "no goal open @0.4" in table.loc["C1", "reason"]
    assert "no per-question record of gpt-3.5" in table.loc["C4", "reason"]
    assert "universe_greedy_vs_exact.csv is missing: run notebooks/02_universe.ipynb" in table.loc["C11", "reason"]
    assert "has no pool nowhere" in table.loc["C5", "reason"]

    # the same goal in the re-drawn splits: the verdict stands in the splits whose interval reaches zero
    redrawn = pd.DataFrame(
        {
            "id": "C2",
            "benchmark": "mmlu",
            "budget": 0.6,
            "reference": "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "seed": [1, 2, 3],
            "verdict": ["does not hold", "holds, smaller", "does not hold"],
        }
    )
    assert claims_table(claims, tmp_path, profile, redrawn).set_index("id").loc["C2", "redrawn_splits"] == "2 of 3"


def _frames():
    """Four questions, two subjects, three experts: who is right where."""
    questions = pd.DataFrame(
        {"subject": ["a", "a", "b", "b"], "idx": [0, 1, 0, 1], "subcategory": ["math", "math", "law", "law"]}
    )
    scores = pd.DataFrame(
        {"cheap": [1, 0, 0, 0], "mid": [1, 1, 0, 0], "dear": [0, 1, 1, 0]},
        index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]),
        dtype=float,
    )
    return questions, scores


def test_the_oracle_and_what_it_pays():
    questions, scores = _frames()
    members = ["cheap", "mid", "dear"]
    gain = oracle_gain("p", members, questions, scores, seed=0)
    assert gain["value"] == pytest.approx(100 * (3 / 4 - 2 / 4))  # oracle 3 of 4, best single (mid) 2 of 4
    assert gain["ci_low"] <= gain["value"] <= gain["ci_high"]
    costs = pd.Series({"cheap": 0.2, "mid": 0.6, "dear": 0.9, "ref": 0.26})
    price = oracle_price("p", members, questions, scores, costs, "ref", seed=0)
    # the cheapest right expert: cheap (0.2), mid (0.6), dear (0.9); the last question nobody answers
    assert price["value"] == pytest.approx(0.26 - (0.2 + 0.6 + 0.9) / 3)
    assert "3 of 4 test questions" in price["questions"]


def test_the_4bit_estimate_is_on_paper():
    experts = [
        Expert("a", 7.0, "7B", 0.2, "open", "p", "s"),
        Expert("b", 13.0, "13B", 0.26, "open", "p", "s"),
    ]
    row = memory_4bit("p", experts)
    assert row["value"] == row["ci_low"] == row["ci_high"] == pytest.approx(40 - 20 * 0.5 * 1.2)
    assert "computed, not run" in row["reference"]
    unknown = memory_4bit("p", [Expert("gpt", None, "GPT4", 20.0, "closed", "p", "s")])
    assert pd.isna(unknown["value"]) and "no parameter count" in unknown["reference"]
