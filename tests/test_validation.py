"""Every bad input at an entry point fails at once with an error that names it and the fix."""

import inspect

import numpy as np
import pandas as pd
import pytest
import yaml

from leeroo_lib import cli, config
from leeroo_lib.config import CausalLM, Encoder, EndpointsFile, Profile, available_profiles, load_profile, read_settings
from leeroo_lib.data.benchmarks import question_key
from leeroo_lib.data.suites import load_recorded_scores
from leeroo_lib.routing.budget import allocate
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies.baselines import PriorPolicy, SubjectPolicy
from leeroo_lib.routing.policies.embedding import KNNPolicy
from leeroo_lib.routing.policies.neural import CausalLMPolicy, EncoderPolicy

COSTS = pd.Series({"small": 0.2, "large": 0.6, "closed": 20.0})


def frame(n: int = 6) -> pd.DataFrame:
    """Questions with every column a policy may read, as data.load_mmlu() gives them."""
    stems = [f"What is {i} + {i}?" for i in range(n)]
    choices = [[str(2 * i), str(i), "0", "none"] for i in range(n)]
    return pd.DataFrame(
        {
            "subject": ["arithmetic"] * n,
            "idx": np.arange(n),
            "question": stems,
            "choices": choices,
            "qkey": [question_key(s, c) for s, c in zip(stems, choices)],
        }
    )


def scores_of(questions: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        (rng.random((len(questions), len(COSTS))) < 0.6).astype(float),
        columns=COSTS.index,
        index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]),
    )


@pytest.fixture(scope="module")
def orchestrator():
    questions = frame()
    return Orchestrator(SubjectPolicy().fit(questions, scores_of(questions)), COSTS, pools={"open": ["small", "large"]})


def fitted_without_model(cls):
    """A policy whose experts are set but whose model was never loaded: any check that passes
    would reach the model and fail there, so an error naming the input proves the check ran first."""
    policy = cls()
    policy.experts_ = list(COSTS.index)
    return policy


@pytest.mark.parametrize(
    "budget, error, message",
    [
        (float("nan"), ValueError, r"budget must be a finite number .* got nan"),
        (float("inf"), ValueError, r"budget must be a finite number .* got inf"),
        ("0.5", TypeError, r"budget must be a number .* got '0\.5' \(str\)"),
        (None, TypeError, r"budget must be a number .* got None \(NoneType\)"),
        (True, TypeError, r"budget must be a number .* got True \(bool\)"),
    ],
)
def test_a_budget_that_is_not_a_finite_number_is_refused(orchestrator, budget, error, message):
    with pytest.raises(error, match=message):
        orchestrator.route(frame(), budget)
    with pytest.raises(error, match=message):
        allocate(orchestrator.policy.predict_proba(frame()), COSTS, budget)


def test_several_budgets_must_be_a_list(orchestrator):
    with pytest.raises(TypeError, match=r"budgets must be a list of numbers, got 0\.5; for one budget call route"):
        orchestrator.route_budgets(frame(), 0.5)
    with pytest.raises(ValueError, match=r"budgets\[1\] must be a finite number"):
        orchestrator.route_budgets(frame(), [0.5, float("nan")])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"experts": []}, ValueError, r"experts is empty: name at least one of \['small', 'large', 'closed'\]"),
        ({"experts": ["small", "large", "small"]}, ValueError, r"experts names \['small'\] more than once"),
        (
            {"experts": "small"},
            TypeError,
            r"experts must be a list of expert names, got 'small' \(str\); for one "
            r"expert write experts=\['small'\]",
        ),
        ({"experts": ["small", "gpt-5"]}, ValueError, r"unknown expert\(s\) \['gpt-5'\]"),
        ({"pool": ["open"]}, TypeError, r"pool must be the name of a pool \(one of \['open'\]\)"),
        ({"pool": "mix"}, ValueError, r"unknown pool 'mix': this orchestrator serves the pools \['open'\]"),
    ],
)
def test_bad_expert_lists_and_pools_are_named(orchestrator, kwargs, error, message):
    with pytest.raises(error, match=message):
        orchestrator.route(frame(), 1.0, **kwargs)


def test_a_pool_given_to_the_orchestrator_is_checked_like_experts(orchestrator):
    with pytest.raises(ValueError, match=r"pool 'open' names \['small'\] more than once"):
        Orchestrator(orchestrator.policy, COSTS, pools={"open": ["small", "small"]})


def test_an_empty_frame_routes_to_an_empty_result(orchestrator):
    routes = orchestrator.route(frame().iloc[:0], 0.5, pool="open")
    assert routes.empty and routes.name == "expert"
    assert all(r.empty for r in orchestrator.route_budgets(pd.DataFrame(), [0.2, 1.0]).values())
    # a text policy returns at once, before its tokenizer (never loaded here) sees the empty batch
    empty = fitted_without_model(EncoderPolicy).predict_proba(frame().iloc[:0])
    assert empty.shape == (0, len(COSTS)) and list(empty.columns) == list(COSTS.index)


def with_column(column: str, value) -> pd.DataFrame:
    questions = frame()
    questions[column] = pd.Series([value] * len(questions), dtype=object)
    return questions


@pytest.mark.parametrize(
    "policy, questions, error, message",
    [
        (
            EncoderPolicy,
            frame().drop(columns="choices"),
            ValueError,
            r"questions lack the column\(s\) \['choices'\] that EncoderPolicy\.predict_proba reads \(it needs "
            r"\['question', 'choices'\]\); build the frame like data\.benchmarks\.load_questions\(\)",
        ),
        (
            EncoderPolicy,
            with_column("choices", "ABCD"),
            ValueError,
            r"questions\['choices'\] must hold a list of up to 10 answer texts \(not one string.*6 row\(s\) do not "
            r"\(first: row 0 holds 'ABCD'\)",
        ),
        (
            EncoderPolicy,
            with_column("question", np.nan),
            ValueError,
            r"questions\['question'\] must hold the "
            r"question's text in every row.*holds nan",
        ),
        (
            KNNPolicy,
            frame().drop(columns="qkey"),
            ValueError,
            r"\['qkey'\] that KNNPolicy\.predict_proba reads.*"
            r"qkey = data\.benchmarks\.question_key\(question, choices\)",
        ),
        (
            SubjectPolicy,
            frame().drop(columns="subject"),
            ValueError,
            r"\['subject'\] that SubjectPolicy\.predict_proba",
        ),
        (PriorPolicy, frame()["question"].tolist(), TypeError, r"questions must be a pandas DataFrame, got list"),
    ],
)
def test_predict_proba_names_what_the_policy_reads(policy, questions, error, message):
    with pytest.raises(error, match=message):
        fitted_without_model(policy).predict_proba(questions)


def test_route_checks_the_columns_of_the_orchestrators_policy(orchestrator):
    with pytest.raises(ValueError, match=r"\['subject'\] that SubjectPolicy\.predict_proba reads"):
        orchestrator.route(frame().drop(columns="subject"), 0.5)


def test_fit_checks_its_questions_and_scores():
    questions = frame()
    with pytest.raises(ValueError, match=r"\['idx'\] that PriorPolicy\.fit reads \(it needs \['subject', 'idx'\]\)"):
        PriorPolicy().fit(questions.drop(columns="idx"), scores_of(questions))
    with pytest.raises(ValueError, match=r"PriorPolicy\.fit got no question"):
        PriorPolicy().fit(questions.iloc[:0], scores_of(questions))
    with pytest.raises(TypeError, match=r"scores must be a pandas DataFrame .* got ndarray"):
        PriorPolicy().fit(questions, scores_of(questions).to_numpy())
    twice = scores_of(questions)[["small", "small"]]
    with pytest.raises(ValueError, match=r"scores has the expert column\(s\) \['small'\] more than once"):
        PriorPolicy().fit(questions, twice)
    with pytest.raises(RuntimeError, match=r"PriorPolicy is not fitted: call fit\(questions, scores\) first"):
        PriorPolicy().predict_proba(questions)


def test_allocate_refuses_missing_probabilities_and_prices(orchestrator):
    proba = orchestrator.policy.predict_proba(frame())
    unmeasured = proba.copy()
    unmeasured.loc[2, "large"] = np.nan
    with pytest.raises(ValueError, match=r"proba has NaN for 1 queries \(first: \[2\]\)"):
        allocate(unmeasured, COSTS, 1.0)
    with pytest.raises(ValueError, match=r"no cost given for expert\(s\) \['closed'\]"):
        allocate(proba, COSTS.drop("closed"), 1.0)
    with pytest.raises(ValueError, match=r"costs must be finite, non-negative .* \{'large': nan\}"):
        allocate(proba, COSTS.mask(COSTS.index == "large"), 1.0)
    with pytest.raises(ValueError, match=r"unknown mode 'greedy'"):
        allocate(proba, COSTS, 1.0, mode="greedy")


def test_an_incomplete_saved_orchestrator_says_how_to_rebuild_it(orchestrator, tmp_path):
    orchestrator.save(tmp_path)
    (tmp_path / "policy_0" / "policy.joblib").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"incomplete orchestrator: .*policy\.joblib is missing; save it "
        r"again with notebooks/04_policy\.ipynb",
    ):
        Orchestrator.load(tmp_path)


def test_missing_checksums_say_how_to_restore_them(data_copy):
    (data_copy / "SHA256SUMS").unlink()
    with pytest.raises(FileNotFoundError, match=r"SHA256SUMS missing: .*`git checkout -- data/SHA256SUMS`"):
        load_recorded_scores(data_copy)


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_and_endpoints_file_fits_the_schema(name):
    profile = read_settings(config.CONFIG_DIR / f"{name}.yaml", Profile)
    assert profile.name == name and all(pool.name == key for key, pool in profile.pools.items())
    assert all(pool.universe.min_coverage is not None for pool in profile.pools.values())
    endpoints = config.ENDPOINTS_DIR / f"{name}.yaml"
    if endpoints.is_file():
        assert read_settings(endpoints, EndpointsFile).service.pool in profile.pools


@pytest.mark.parametrize("schema, policy", [(Encoder, EncoderPolicy), (CausalLM, CausalLMPolicy)])
def test_the_schema_knows_every_constructor_argument_of_a_policy_block(schema, policy):
    assert set(schema.model_fields) == set(inspect.signature(policy).parameters) - {"device", "seed"}


def bad_profile(tmp_path, monkeypatch, change) -> str:
    """A copy of the smoke profile, changed, in a private configs folder."""
    settings = yaml.safe_load((config.CONFIG_DIR / "smoke.yaml").read_text())
    change(settings)
    settings["name"] = "typo"
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(settings))
    monkeypatch.setattr(config.loader, "CONFIG_DIR", tmp_path)
    return "typo"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s["scoring"].update(subjets=["anatomy"]),
            r"typo\.yaml does not fit the schema of Profile .*\n  scoring\.subjets: unknown key; "
            r"known keys here: task, subjects, questions_per_subject",
        ),
        (
            lambda s: s["evaluation"].update(max_test_question=8),
            r"evaluation\.max_test_question: unknown key; known "
            r"keys here: max_test_questions, highlight, goal",
        ),
        (lambda s: s["scoring"].pop("questions_per_subject"), r"scoring\.questions_per_subject: missing; known keys"),
        (lambda s: s.update(seed="0"), r"\n  seed: Input should be a valid integer, got '0'"),
        (
            lambda s: s["scoring"]["live_experts"][0].update(cost_per_1m_usd="cheap"),
            r"scoring\.live_experts\[0\]\.cost_per_1m_usd: Input should be a valid number, got 'cheap'",
        ),
        (
            lambda s: s["scoring"].update(batch_size="al"),
            r"scoring\.batch_size: Input should be a valid integer or String should match pattern",
        ),
        (
            lambda s: s["selfplay"].update(pool="opn"),
            r"names pools it does not define \(selfplay\.pool: 'opn'\); "
            r"its pools are \['frontier', 'live', 'mix', 'open', 'pro-open'\]",
        ),
        (
            lambda s: s["pools"]["mix"]["universe"].update(rule="cost_aware"),
            r"pools\.mix\.universe: the cost_aware rule, and only it, takes a price_cap",
        ),
        (
            lambda s: s["pools"]["mix"]["universe"].update(rule="greedyy"),
            r"pools\.mix\.universe\.rule: Input should be 'greedy' or 'cost_aware', got 'greedyy'",
        ),
        (lambda s: s["pools"]["mix"].pop("title"), r"pools\.mix\.title: missing; known keys"),
        (
            lambda s: s["pools"]["mix"].update(paper_pool="open"),
            r"paper_pool \{'mix': 'open', 'open': 'open'\}: one pool at most stands for each of the paper's pools",
        ),
        (
            lambda s: s["scoring"]["live_experts"][0].update(backend="local-completions", method="generative"),
            r"scoring\.live_experts\[0\]: backend 'local-completions' scores by loglikelihood, not 'generative'",
        ),
        (
            lambda s: s["scoring"].update(quantization={"precisions": ["nf4"], "questions_per_subject": 2}),
            r"scoring\.quantization: precisions must hold 'fp32'",
        ),
    ],
)
def test_a_profile_that_does_not_fit_the_schema_names_file_key_and_known_keys(tmp_path, monkeypatch, change, message):
    name = bad_profile(tmp_path, monkeypatch, change)
    with pytest.raises(ValueError, match=message):
        load_profile(name)


def test_a_profile_that_is_not_a_mapping_is_named(tmp_path, monkeypatch):
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")
    monkeypatch.setattr(config.loader, "CONFIG_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"empty\.yaml must hold a mapping of settings \(key: value\), found NoneType"):
        load_profile("empty")


def test_the_command_line_check_prints_the_librarys_message(capsys):
    assert cli.main(["check-profile", "nope"]) == 2
    assert "error: unknown profile 'nope': choose one of" in capsys.readouterr().err
    assert cli.main(["check-profile", "smoke", "cpu"]) == 0


def test_an_endpoints_file_that_does_not_fit_names_the_key(tmp_path):
    path = tmp_path / "endpoints.yaml"
    service = "service: {pool: open, budget: 0.2, window: 4}\n"
    path.write_text(service + "experts:\n  a: {base_url: http://127.0.0.1:9/v1}\n")
    with pytest.raises(
        ValueError,
        match=r"endpoints\.yaml does not fit the schema of EndpointsFile.*\n  experts\.a: give "
        r"base_url and model",
    ):
        read_settings(path, EndpointsFile)
    path.write_text("service: {pool: open, budget: 0.2, windw: 4}\n")
    with pytest.raises(ValueError, match=r"service\.windw: unknown key; known keys here: pool, budget, window"):
        read_settings(path, EndpointsFile)
