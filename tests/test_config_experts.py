import pytest

from leeroo_lib.config import available_profiles, load_profile
from leeroo_lib.data.splits import make_splits, split_index
from leeroo_lib.experts.catalog import (
    accuracy_table,
    expert_costs,
    get_experts,
    live_experts,
    load_catalog,
    load_experts,
)


def test_profiles_exist():
    assert {"smoke", "cpu", "paper"} <= set(available_profiles())


def test_unknown_profile_is_named_with_choices():
    with pytest.raises(ValueError, match=r"unknown profile 'huge': choose one of .*cpu, paper.*smoke"):
        load_profile("huge")


def test_profile_comes_from_environment(monkeypatch):
    monkeypatch.setenv("LEEROO_PROFILE", "smoke")
    assert load_profile().name == "smoke"
    monkeypatch.delenv("LEEROO_PROFILE")
    assert load_profile().name == "cpu"


def test_gpu_profile_without_gpu_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        load_profile("paper")


def test_smoke_outputs_never_land_on_cpu_outputs():
    assert load_profile("smoke").output_root != load_profile("cpu").output_root


def test_missing_artifact_names_the_notebook(tmp_path):
    cfg = load_profile("smoke")
    cfg = cfg.model_copy(update={"output_dir": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="01_expert_scoring"):
        cfg.require("score_matrix")


def test_catalog_has_the_13_recorded_experts(recorded):
    catalog = load_experts()
    assert {e.name for e in catalog} == set(recorded.columns)
    costs = expert_costs(catalog)
    assert costs["openai/gpt-4-1106-preview"] == 20.0 and costs.min() == 0.2


def test_unknown_expert_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown expert\(s\) \['gpt-5'\].*mistralai/Mistral-7B-v0.1"):
        get_experts(["gpt-5"])


def test_accuracy_table_matches_provenance(recorded):
    table = accuracy_table(recorded, load_experts()).set_index("expert")
    assert table.loc["openai/gpt-4-1106-preview", "accuracy"] == pytest.approx(0.81, abs=0.005)
    assert table.loc["mistralai/Mixtral-8x7B-Instruct-v0.1", "n_questions"] == 13_042


def test_splits_are_seeded_stratified_and_test_is_fully_scored(recorded):
    a = make_splits(recorded, test_fraction=0.4, seed=0)
    assert a.equals(make_splits(recorded, test_fraction=0.4, seed=0))
    assert not a.equals(make_splits(recorded, test_fraction=0.4, seed=1))
    test = split_index(a, "test")
    assert recorded.loc[test].notna().all().all()
    assert len(test) == pytest.approx(0.4 * 5_183, abs=2)
    assert a[a["split"] == "test"]["subject"].nunique() == recorded.dropna().index.get_level_values(0).nunique()


def test_catalog_joins_the_suites_and_the_live_experts():
    cfg = load_profile("smoke")
    catalog = load_catalog(cfg)
    assert {e.suite for e in catalog} == {"recorded", "helm", "mmlu_pro", "live"}
    mmlu_only = cfg.model_copy(update={"benchmarks": ["mmlu"]})
    assert {e.suite for e in load_catalog(mmlu_only)} == {"recorded", "helm", "live"}
    assert {e.benchmark for e in catalog if e.suite == "live"} == {"mmlu"}
    assert len([e for e in load_catalog() if e.suite == "mmlu_pro"]) == 29
    assert len([e for e in catalog if e.suite == "helm"]) == 8
    names = [e.name for e in catalog]
    assert "openai/gpt-4-1106-preview" in names and "openai/gpt-4-1106-preview (HELM)" in names
    assert len(names) == len(set(names))


def test_each_live_expert_carries_the_protocol_it_is_scored_by(live_expert):
    cfg = load_profile("smoke")
    smollm2 = cfg.scoring.live_experts[0]
    chat = live_expert(
        name="my-chat-expert",
        backend="local-chat-completions",
        model_args={"base_url": "http://127.0.0.1:9/v1/chat/completions", "model": "x"},
    )
    both = cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update={"live_experts": [smollm2, chat]})})
    protocols = {e.name: e.protocol for e in live_experts(both)}
    assert "loglikelihood" in protocols[smollm2.name]
    assert "generative, letter parsed" in protocols["my-chat-expert"]


def test_a_live_expert_named_like_a_recorded_one_is_refused():
    cfg = load_profile("smoke")
    entry = cfg.scoring.live_experts[0].model_copy(update={"name": "mistralai/Mistral-7B-v0.1"})
    clash = cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update={"live_experts": [entry]})})
    with pytest.raises(ValueError, match=r"'mistralai/Mistral-7B-v0.1'\] appear twice in the catalog"):
        load_catalog(clash)
