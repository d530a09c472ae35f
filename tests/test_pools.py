import numpy as np
import pandas as pd
import pytest

from leeroo_lib.config import Pool, load_profile
from leeroo_lib.data.splits import make_splits, split_index
from leeroo_lib.data.suites import load_letter_scores
from leeroo_lib.experts.catalog import load_catalog
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies import score_targets
from leeroo_lib.routing.policies.baselines import PriorPolicy
from leeroo_lib.routing.pools import choose_universe, pool_members, served_experts, served_union

GPT4 = "openai/gpt-4-1106-preview"


@pytest.fixture(scope="module")
def setting(questions, recorded):
    cfg = load_profile("cpu")
    scores = recorded.join(load_letter_scores("helm", questions), how="left")
    return {
        "cfg": cfg,
        "catalog": load_catalog(cfg),
        "scores": scores,
        "splits": make_splits(recorded, test_fraction=0.4, seed=0),
    }


def test_pools_come_from_the_profile(setting):
    pools = setting["cfg"].pools
    assert list(pools) == ["open", "mix", "frontier", "live", "pro-open", "pro-all"]
    catalog = setting["catalog"]
    open_candidates = pool_members(pools["open"], catalog)
    assert GPT4 not in open_candidates and "SmolLM2-135M-Instruct (live)" in open_candidates
    assert not any(name.endswith("(HELM)") for name in pool_members(pools["mix"], catalog))
    assert len(pool_members(pools["frontier"], catalog)) == 8
    assert pools["open"].universe.min_coverage == setting["cfg"].universe.min_coverage


def test_a_pool_naming_an_unknown_expert_says_so(setting):
    with pytest.raises(ValueError, match=r"pool 'mine' names unknown expert\(s\) \['gpt-5'\]"):
        pool_members(Pool(name="mine", title="mine", candidates={"names": ["gpt-5"]}), setting["catalog"])


def test_the_universe_never_reads_a_test_question(setting):
    """Rewriting every test-split result must not move the choice: only S_test may change."""
    pool = setting["cfg"].pools["mix"]
    scores, splits = setting["scores"], setting["splits"]
    chosen = choose_universe(scores, splits, pool, setting["catalog"])
    flipped = scores.copy()
    test = flipped.index.isin(split_index(splits, "test"))
    flipped.loc[test] = 1 - flipped.loc[test]
    again = choose_universe(flipped, splits, pool, setting["catalog"])
    columns = ["expert", "k", "served", "S_train", "eligible"]
    pd.testing.assert_frame_equal(chosen[columns], again[columns])
    assert not np.allclose(chosen["S_test"].dropna(), again["S_test"].dropna())


def test_partly_scored_candidates_follow_min_coverage(setting):
    """The live experts (no scores here) and the 7-8B experts (28% of the training questions) against
    the threshold; an eligible partial candidate is chosen on the rows it covers, never filled."""
    scores = setting["scores"]
    pool = Pool(
        name="open",
        title="open",
        candidates={"suites": ["recorded", "live"], "access": "open"},
        universe={"min_coverage": 0.25},
    )
    table = choose_universe(scores, setting["splits"], pool, setting["catalog"]).set_index("expert")
    live = table.loc["SmolLM2-135M-Instruct (live)"]
    assert not live["eligible"] and live["served"] == 0 and "below min_coverage 25%" in live["reason"]
    assert table.loc["meta-llama/Meta-Llama-3-8B", "eligible"]
    assert table["served"].sum() >= 5 and table["n_train"].iloc[0] < 0.3 * (setting["splits"]["split"] == "train").sum()
    strict = choose_universe(
        scores,
        setting["splits"],
        Pool(
            name="open",
            title="open",
            candidates={"suites": ["recorded"], "access": "open"},
            universe={"min_coverage": 0.5},
        ),
        setting["catalog"],
    )
    assert not strict.set_index("expert").loc["meta-llama/Meta-Llama-3-8B", "eligible"]


def test_cost_aware_universe_keeps_its_summed_price(setting):
    pool = Pool(
        name="frontier",
        title="frontier",
        candidates={"suites": ["helm"]},
        universe={"rule": "cost_aware", "price_cap": 12.0, "min_coverage": 0.5},
    )
    table = choose_universe(setting["scores"], setting["splits"], pool, setting["catalog"])
    served = table[table["served"] == 1]
    assert 0 < served["cost_per_1m_usd"].sum() <= 12.0
    assert list(served["k"]) == list(range(1, len(served) + 1))


def test_a_partly_scored_served_expert_is_routed_to(questions, setting):
    """From the universe to the orchestrator: the served experts are the policy's, and a cheap expert
    measured on 28% of the questions, once served, takes the queries of a small budget."""
    scores, splits, catalog = setting["scores"], setting["splits"], setting["catalog"]
    pools = {name: setting["cfg"].pools[name] for name in ("open", "mix")}
    universe = pd.concat([choose_universe(scores, splits, p, catalog) for p in pools.values()])
    served = served_experts(universe)
    union = list(dict.fromkeys(e for experts in served.values() for e in experts))
    train = questions.set_index(["subject", "idx"]).loc[split_index(splits, "train")].reset_index()
    policy = PriorPolicy().fit(train, scores[union])
    costs = pd.Series({e.name: e.cost_per_1m_usd for e in catalog})
    orchestrator = Orchestrator(policy, costs, mode="global", pools=served)
    test = questions.set_index(["subject", "idx"]).loc[split_index(splits, "test")[:200]].reset_index()
    routes = orchestrator.route(test, 0.2, pool="open")
    seven_b = {e.name for e in catalog if e.size_class == "7B"}
    assert set(routes) <= set(served["open"]) and set(routes) & seven_b
    assert not score_targets(test, scores[served["open"]]).isna().any().any()
    with pytest.raises(ValueError, match="unknown pool 'frontier'"):
        orchestrator.route(test, 5.0, pool="frontier")


def test_orchestrator_keeps_its_pools_through_save_and_load(questions, recorded, tmp_path):
    experts = ["mistralai/Mistral-7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1", GPT4]
    rows = questions.set_index(["subject", "idx"]).loc[recorded[experts].dropna().index[:100]].reset_index()
    costs = pd.Series({experts[0]: 0.2, experts[1]: 0.6, GPT4: 20.0})
    pools = {"cheap": experts[:2], "all": experts}
    orchestrator = Orchestrator(PriorPolicy().fit(rows, recorded[experts]), costs, pools=pools)
    orchestrator.save(tmp_path)
    reloaded = Orchestrator.load(tmp_path)
    assert reloaded.pools == pools
    assert reloaded.route(rows, 5.0, pool="cheap").isin(pools["cheap"]).all()
    with pytest.raises(ValueError, match="not both"):
        reloaded.route(rows, 5.0, pool="cheap", experts=experts)
    with pytest.raises(ValueError, match=r"pool 'bad': unknown expert\(s\) \['gpt-5'\]"):
        Orchestrator(orchestrator.policy, costs, pools={"bad": ["gpt-5"]})


def test_the_union_of_served_experts_keeps_pool_order_and_names_each_once():
    served = {"a": ["x", "y"], "b": ["y", "z"], "c": ["w"]}
    assert served_union(served, ["a", "b"]) == ["x", "y", "z"]
    assert served_union(served, ["b", "a"]) == ["y", "z", "x"]
