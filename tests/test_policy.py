import inspect
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from leeroo_lib.config import CONFIG_DIR, PolicySettings, Profile, load_profile
from leeroo_lib.data.benchmarks import load_questions
from leeroo_lib.data.splits import make_splits, split_index
from leeroo_lib.evaluation.goal import goal_evaluation
from leeroo_lib.routing.policies import (
    Policy,
    build,
    most_evaluated,
    policy_class,
    register_policy,
    score_targets,
    training_questions,
)
from leeroo_lib.routing.policies.baselines import OraclePolicy, PriorPolicy, RandomPolicy, SubjectPolicy
from leeroo_lib.routing.policies.embedding import (
    KNNPolicy,
    LogisticProbePolicy,
    MatrixFactorizationPolicy,
    StackedPolicy,
    _success_proba,
)
from leeroo_lib.routing.policies.neural import CausalLMPolicy, EncoderPolicy
from leeroo_lib.routing.policies.registry import CLASSES, NAMED
from leeroo_lib.routing.policies.training import masked_bce

EXPERTS = ["algebraist", "lawyer", "generalist"]


class StubEmbedder:
    """Two clusters by subject, so routing logic is tested without a language model."""

    def embed(self, questions):
        rng = np.random.default_rng(len(questions))
        base = np.where((questions["subject"] == "algebra").to_numpy()[:, None], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
        return base + 0.05 * rng.standard_normal(base.shape)


def synthetic(n: int, seed: int = 0):
    """The algebraist answers algebra, the lawyer law; the generalist is half right; 20% not measured."""
    rng = np.random.default_rng(seed)
    subject = rng.choice(["algebra", "law"], n)
    questions = pd.DataFrame({"subject": subject, "idx": np.arange(n), "qkey": [f"q{i}" for i in range(n)]})
    algebra = subject == "algebra"
    values = np.stack([algebra, ~algebra, rng.random(n) < 0.5], axis=1).astype(float)
    values[rng.random(values.shape) < 0.2] = np.nan
    scores = pd.DataFrame(values, columns=EXPERTS, index=pd.MultiIndex.from_frame(questions[["subject", "idx"]]))
    return questions, scores


def test_targets_follow_the_questions_not_the_score_order():
    questions, scores = synthetic(30)
    targets = score_targets(questions.iloc[::-1], scores.sample(frac=1, random_state=0))
    assert targets.index.equals(questions.index[::-1])
    np.testing.assert_array_equal(targets.to_numpy(), scores.to_numpy()[::-1])
    with pytest.raises(ValueError, match="1 questions have no row"):
        score_targets(questions, scores.iloc[1:])


def test_masked_bce_ignores_what_was_not_measured():
    logits = torch.tensor([[0.3, -1.0], [2.0, 0.5]], requires_grad=True)
    targets = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    loss = masked_bce(logits, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor([0.3, 2.0, 0.5]), torch.tensor([1.0, 0.0, 1.0])
    )
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert logits.grad[0, 1] == 0


@pytest.fixture(scope="module")
def fitted():
    """Every cheap policy fitted once on the synthetic questions."""
    questions, scores = synthetic(400)
    policies = {
        "prior": PriorPolicy(),
        "random": RandomPolicy(seed=3),
        "subject": SubjectPolicy(smoothing=1.0),
        "knn": KNNPolicy(n_neighbors=15, embedder=StubEmbedder()),
        "mf": MatrixFactorizationPolicy(dim=4, epochs=60, lr=0.1, embedder=StubEmbedder()),
        "stacked": StackedPolicy(embedder=StubEmbedder(), n_neighbors=15, inner_folds=3),
    }
    return questions, {name: policy.fit(questions, scores) for name, policy in policies.items()}


@pytest.mark.parametrize("name", ["prior", "random", "subject", "knn", "mf", "stacked"])
def test_every_policy_keeps_the_contract(fitted, name):
    questions, policies = fitted
    new = questions.iloc[:50].set_index(questions.index[:50] + 1000)
    proba = policies[name].predict_proba(new)
    assert proba.index.equals(new.index) and list(proba.columns) == EXPERTS
    assert proba.notna().all().all() and ((proba >= 0) & (proba <= 1)).all().all()


@pytest.mark.parametrize("name", ["subject", "knn", "mf", "stacked"])
def test_query_aware_policies_learn_who_answers_what(fitted, name):
    questions, policies = fitted
    proba = policies[name].predict_proba(questions)
    algebra = questions["subject"] == "algebra"
    assert (proba.loc[algebra].idxmax(axis=1) == "algebraist").mean() > 0.95
    assert (proba.loc[~algebra].idxmax(axis=1) == "lawyer").mean() > 0.95


def test_subject_policy_shrinks_each_subject_towards_the_prior():
    """By hand, smoothing 2: expert a is right on 2 of 3 algebra questions and 0 of 1 law question
    measured, so its prior is 2/4 and its algebra chance (2 + 2 * 0.5) / (3 + 2) = 0.6, law
    (0 + 2 * 0.5) / (1 + 2) = 1/3; b (prior 3/4): algebra (3 + 1.5) / 5 = 0.9, law 1.5 / 3 = 0.5. A subject
    never seen gets the prior."""
    questions = pd.DataFrame({"subject": ["algebra"] * 3 + ["law"] * 2, "idx": range(5)})
    values = [[1, 1], [1, 1], [0, 1], [0, np.nan], [np.nan, 0]]
    scores = pd.DataFrame(values, columns=["a", "b"], index=pd.MultiIndex.from_frame(questions))
    policy = SubjectPolicy(smoothing=2.0).fit(questions, scores)
    asked = pd.DataFrame({"subject": ["law", "algebra", "chemistry"], "idx": [9, 9, 9]})
    np.testing.assert_allclose(policy.predict_proba(asked).to_numpy(), [[1 / 3, 0.5], [0.6, 0.9], [0.5, 0.75]])


def test_prior_is_the_training_accuracy_over_measured_rows():
    questions, scores = synthetic(200)
    proba = PriorPolicy().fit(questions, scores).predict_proba(questions.head(3))
    np.testing.assert_allclose(proba.iloc[0].to_numpy(), scores.mean().to_numpy())


def test_most_evaluated_rows_come_first_and_the_draw_is_seeded():
    _, scores = synthetic(100)
    chosen = most_evaluated(scores, 40, seed=1)
    counts = scores.notna().sum(axis=1)
    assert counts.loc[chosen].min() >= counts.drop(chosen).max()
    assert chosen.equals(most_evaluated(scores, 40, seed=1))
    assert most_evaluated(scores, None, seed=1).equals(scores.index)


def test_no_test_question_in_training_data(questions, recorded):
    splits = make_splits(recorded, test_fraction=0.4, seed=0)
    training_set = recorded.loc[split_index(splits, "train")]
    chosen = training_questions(questions, training_set, splits, 500, seed=0)
    test = split_index(splits, "test")
    assert len(chosen) == 500 and not chosen.set_index(["subject", "idx"]).index.isin(test).any()
    leaky = pd.concat([training_set, recorded.loc[test[:3]]])
    with pytest.raises(ValueError, match="3 training-set rows are test-split questions"):
        training_questions(questions, leaky, splits, 500, seed=0)


def real_subset(questions, n=24, subjects=("abstract_algebra", "professional_law")):
    """Real question text (MMLU's, or another benchmark's two ``subjects``) with synthetic outcomes: what
    a language-model policy needs to run."""
    subset = questions[questions["subject"].isin(subjects)]
    subset = subset.groupby("subject").head(n // 2).reset_index(drop=True)
    algebra = (subset["subject"] == subjects[0]).to_numpy()
    scores = pd.DataFrame(
        np.stack([algebra, ~algebra, algebra], axis=1).astype(float),
        columns=EXPERTS,
        index=pd.MultiIndex.from_frame(subset[["subject", "idx"]]),
    )
    scores.iloc[0, 2] = np.nan
    return subset, scores


def small_policy(kind: str, scores: pd.DataFrame):
    """A quick-to-fit policy of each kind (the neural ones read a few real questions, briefly)."""
    return {
        "PriorPolicy": lambda: PriorPolicy(),
        "RandomPolicy": lambda: RandomPolicy(seed=3),
        "SubjectPolicy": lambda: SubjectPolicy(smoothing=1.0),
        "OraclePolicy": lambda: OraclePolicy(scores),
        "KNNPolicy": lambda: KNNPolicy(n_neighbors=5, embedder=StubEmbedder()),
        "MatrixFactorizationPolicy": lambda: MatrixFactorizationPolicy(
            dim=4, epochs=30, lr=0.1, embedder=StubEmbedder()
        ),
        "LogisticProbePolicy": lambda: LogisticProbePolicy(StubEmbedder(), subject=True, seed=0),
        "StackedPolicy": lambda: StackedPolicy(embedder=StubEmbedder(), n_neighbors=5, inner_folds=3),
        "EncoderPolicy": lambda: EncoderPolicy(max_length=24, epochs=2, batch_size=8, head_lr=0.05, val_fraction=0.25),
        "CausalLMPolicy": lambda: CausalLMPolicy(max_length=16, epochs=1, batch_size=4, val_fraction=0.25, seed=0),
    }[kind]()


@pytest.fixture(scope="module")
def pro_questions():
    return load_questions("mmlu_pro")


@pytest.mark.parametrize("benchmark", ["mmlu", "mmlu_pro"])
@pytest.mark.parametrize("kind", sorted(CLASSES))  # every kind: its three modules are imported above
def test_every_policy_kind_saves_and_reloads_through_the_registry(questions, pro_questions, kind, benchmark, tmp_path):
    n = 8 if kind == "CausalLMPolicy" else 24
    if benchmark == "mmlu":
        subset, scores = real_subset(questions, n)
    else:  # ten options, sources for subjects
        subset, scores = real_subset(pro_questions, n, ("ori_mmlu-high_school_physics", "stemez-Chemistry"))
        assert subset["choices"].map(len).max() == 10
    policy = small_policy(kind, scores).fit(subset, scores)
    proba = policy.predict_proba(subset)
    assert proba.index.equals(subset.index) and list(proba.columns) == EXPERTS
    assert ((proba >= 0) & (proba <= 1) | proba.isna()).all().all()
    policy.save(tmp_path)
    here = "cuda" if torch.cuda.is_available() else "cpu"
    if hasattr(policy, "device"):  # a learned policy records its parameters; it may have been trained elsewhere
        saved = json.loads((tmp_path / "policy.json").read_text())
        assert saved["params"] == policy.get_params()
        saved["params"]["device"] = "cpu" if here == "cuda" else "cuda"
        (tmp_path / "policy.json").write_text(json.dumps(saved))
    reloaded = policy_class(kind).load(tmp_path)
    assert type(reloaded) is type(policy)
    assert getattr(reloaded, "device", here) == here  # loaded on this machine's device
    np.testing.assert_allclose(reloaded.predict_proba(subset), proba, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(CLASSES))  # every kind: its three modules are imported above
def test_parameters_are_read_from_the_constructor(kind):
    policy = small_policy(kind, synthetic(10)[1]).set_params(seed=5)
    assert set(policy.get_params()) == set(inspect.signature(type(policy)).parameters)
    assert type(clone(policy)) is type(policy) and clone(policy).seed == 5


@pytest.mark.parametrize("name", ["subject", "stacked"])
def test_a_clone_is_unfitted_and_fits_alike(fitted, name):
    questions, policies = fitted
    copy = clone(policies[name])
    assert not [attribute for attribute in vars(copy) if attribute.endswith("_")]
    copy.fit(questions, synthetic(400)[1])
    np.testing.assert_allclose(copy.predict_proba(questions), policies[name].predict_proba(questions))


# every name a profile calls a policy by, and its class
NAMES = {
    "best-single-expert": PriorPolicy,
    "random-mix": RandomPolicy,
    "subject-best": SubjectPolicy,
    "knn": KNNPolicy,
    "mf": MatrixFactorizationPolicy,
    "logistic-probe": LogisticProbePolicy,  # the stacked policy's probe, alone (leeroo cv)
    "leeroo-stacked": StackedPolicy,
    "leeroo-encoder": EncoderPolicy,
    "leeroo-causal-lm": CausalLMPolicy,
    "leeroo-causal-lm-qlora": CausalLMPolicy,  # in NF4 4-bit: QLoRA
}


def test_build_gives_each_name_its_kind_with_the_profile_settings():
    settings = PolicySettings.model_validate(
        {
            **load_profile("smoke").policy.model_dump(exclude_unset=True),
            "knn_neighbors": 7,
            "mf_dim": 3,
            "encoder": {"max_length": 24, "epochs": 2},  # the other keys unset: the policy's defaults
            "stacked": {"C": 0.02, "inner_folds": 2},
            "causal_lm": {"quantize_4bit": True, "train_questions": 9},
        }
    )
    assert NAMED == NAMES  # the classes register these names, and no test leaves one of its own behind
    assert {*settings.compared, *settings.FINE_TUNED} <= set(NAMED)  # the names the schema knows are registered
    embedder = StubEmbedder()
    built = {name: build(name, settings, device="cpu", seed=7, embedder=embedder) for name in NAMES}
    assert {name: type(p) for name, p in built.items()} == NAMES
    assert all(p.seed == 7 and getattr(p, "embedder", embedder) is embedder for p in built.values())
    assert (built["knn"].n_neighbors, built["mf"].dim) == (7, 3)
    encoder = built["leeroo-encoder"]
    assert (encoder.max_length, encoder.epochs, encoder.device) == (24, 2, "cpu")
    assert encoder.lr == inspect.signature(EncoderPolicy).parameters["lr"].default
    assert (built["leeroo-stacked"].C, built["leeroo-stacked"].inner_folds) == (0.02, 2)
    assert built["logistic-probe"].C == 0.02 and built["logistic-probe"].subject  # the stacked policy's probe
    assert built["leeroo-causal-lm-qlora"].quantize_4bit and not built["leeroo-causal-lm"].quantize_4bit
    assert built["leeroo-causal-lm"].train_questions == 9
    with pytest.raises(ValueError, match="from policy.causal_lm, which this profile leaves null"):
        build("leeroo-causal-lm", load_profile("smoke").policy, device="cpu", seed=0)


@pytest.fixture
def column_means_policy():
    """A policy registered for one test only: each expert's training accuracy, the mean of its measured scores."""

    @register_policy("column-means")
    class ColumnMeansPolicy(Policy):
        reads = ()

        def __init__(self, seed: int = 0):
            self.seed = seed

        def fit(self, questions, scores):
            self.experts_ = list(scores.columns)
            self.means_ = score_targets(questions, scores).mean().to_numpy()
            return self

        def predict_proba(self, questions):
            return self._frame(np.tile(self.means_, (len(questions), 1)), questions)

    yield ColumnMeansPolicy
    for table in (CLASSES, NAMED):
        for key in [key for key, cls in table.items() if cls is ColumnMeansPolicy]:
            del table[key]


def test_a_policy_registered_in_one_file_is_built_and_fitted_through_a_profile(column_means_policy):
    profile = load_profile("smoke")
    # the profile names the new policy; model_copy does not re-run the schema, whose compared policies leave it out
    settings = profile.policy.model_copy(
        update={"orchestrator": {**profile.policy.orchestrator, "mmlu": "column-means"}}
    )
    policy = build(settings.orchestrator["mmlu"], settings, device=profile.device, seed=profile.seed)
    assert type(policy) is column_means_policy and policy.seed == profile.seed
    assert policy_class("ColumnMeansPolicy") is column_means_policy  # what a saved orchestrator looks up
    questions, scores = synthetic(40)
    proba = policy.fit(questions.iloc[:30], scores).predict_proba(questions.iloc[30:])
    np.testing.assert_allclose(proba.to_numpy(), np.tile(scores.iloc[:30].mean().to_numpy(), (10, 1)))
    with pytest.raises(ValueError, match="PriorPolicy takes policy names already registered: {'column-means': 'Col"):
        register_policy("column-means")(PriorPolicy)
    assert NAMED["column-means"] is column_means_policy


def test_an_unknown_policy_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown policy 'nope'; known policies: best-single-expert, random-mix"):
        build("nope", load_profile("smoke").policy, device="cpu", seed=0)
    with pytest.raises(ValueError, match="unknown policy kind 'Nope'.*EncoderPolicy"):
        policy_class("Nope")


@pytest.mark.parametrize("orchestrator", ["logistic-probe", "leeroo-causal-lm", "Stacked"])
def test_the_orchestrator_must_be_a_policy_notebook_04_fits(orchestrator):
    settings = load_profile("smoke").policy.model_dump(exclude_unset=True)  # no causal LM
    with pytest.raises(ValueError, match=f"orchestrator '{orchestrator}' \\(mmlu\\) is not a policy notebook 04 fits"):
        PolicySettings.model_validate({**settings, "orchestrator": {"mmlu": orchestrator}})
    # the fine-tuned policies are fitted only on the benchmarks fine_tuned_on names
    with pytest.raises(
        ValueError, match="orchestrator 'leeroo-encoder' \\(mmlu_pro\\) is not a policy notebook 04 fits"
    ):
        PolicySettings.model_validate({**settings, "orchestrator": {"mmlu_pro": "leeroo-encoder"}})
    assert PolicySettings.model_validate({**settings, "orchestrator": {"mmlu": "knn"}}).compared[-1] == "leeroo-stacked"
    smoke = yaml.safe_load((CONFIG_DIR / "smoke.yaml").read_text())
    with pytest.raises(ValueError, match=r"selfplay.training gives nothing for benchmark\(s\) \['mmlu_pro'\]"):
        Profile.model_validate({**smoke, "selfplay": {**smoke["selfplay"], "training": {"mmlu": {"budget": 5.0}}}})
    with pytest.raises(ValueError, match="train_on"):
        PolicySettings.model_validate({**settings, "train_on": "half"})
    with pytest.raises(ValueError, match=r"policy.orchestrator gives nothing for benchmark\(s\) \['mmlu_pro'\]"):
        Profile.model_validate(
            {
                **yaml.safe_load((CONFIG_DIR / "smoke.yaml").read_text()),
                "policy": {**settings, "orchestrator": {"mmlu": "knn"}},
            }
        )


def test_goal_evaluation_routes_the_pool_and_measures_against_the_reference():
    """By hand: with a budget that affords the dear expert everywhere, a router that knows the outcomes
    is right on all 4 judged questions (cheap on the first and last, dear on the two others: mean cost
    0.55) against the cheap reference's 2 of 4; a router that always prefers cheap is the reference."""
    outcomes = pd.DataFrame(
        {
            "cheap": [1, 0, 0, 1, np.nan],  # the last question is not judged: a member was not measured
            "dear": [1, 1, 1, 0, 1],
            "outsider": [np.nan, 1, 1, 1, 1],  # not in the pool: its gaps do not matter
        }
    )
    costs = pd.Series({"cheap": 0.1, "dear": 1.0, "outsider": 0.5})
    probas = {
        "knows": outcomes.fillna(0.5),
        "blind": pd.DataFrame({"cheap": 0.9, "dear": 0.5, "outsider": 0.5}, index=outcomes.index),
    }
    result = goal_evaluation(probas, outcomes, costs, ["cheap", "dear"], reference="cheap", budget=1.0, seed=0)
    np.testing.assert_array_equal(result.reference, [1, 0, 0, 1])
    table = result.table.set_index(["router", "mode"])
    assert list(table.index) == [
        ("knows", "sequential"),
        ("knows", "global"),
        ("blind", "sequential"),
        ("blind", "global"),
    ]
    np.testing.assert_allclose(table["accuracy"], [1, 1, 0.5, 0.5])
    np.testing.assert_allclose(table["points over reference"], [50, 50, 0, 0])
    np.testing.assert_allclose(table["mean cost"], [0.55, 0.55, 0.1, 0.1])
    np.testing.assert_allclose(table.loc["blind", ["CI low", "CI high"]], 0)
    assert (table["CI low"] <= table["points over reference"]).all()
    np.testing.assert_array_equal(result.correct["knows", "global"], [1, 1, 1, 1])


def test_encoder_policy_learns_from_the_question_text(questions):
    subset, scores = real_subset(questions)
    policy = small_policy("EncoderPolicy", scores).fit(subset, scores)
    assert list(policy.history_.columns) == ["epoch", "train_loss", "val_loss"]
    proba = policy.predict_proba(subset)
    algebra = (subset["subject"] == "abstract_algebra").to_numpy()
    assert proba["algebraist"][algebra].mean() > proba["algebraist"][~algebra].mean()


def test_light_modules_do_not_import_torch():
    """The orchestrator, evaluation and universe are light: a fresh interpreter imports them without torch
    (the serving process and the scoring command line would pay seconds for it)."""
    light = [
        "leeroo_lib.config",
        "leeroo_lib.data",
        "leeroo_lib.routing.universe",
        "leeroo_lib.routing.budget",
        "leeroo_lib.routing.orchestrator",
        "leeroo_lib.routing.policies",
        "leeroo_lib.routing.pools",
        "leeroo_lib.evaluation.evaluate",
        "leeroo_lib.evaluation.aiq",
        "leeroo_lib.evaluation.goal",
    ]
    code = f"import sys, {', '.join(light)}; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_stacked_policy_reads_the_subject_and_caps_its_questions():
    questions, scores = synthetic(300)
    policy = StackedPolicy(embedder=StubEmbedder(), n_neighbors=10, inner_folds=3, train_questions=100)
    policy.fit(questions, scores)
    with pytest.raises(ValueError, match="subject"):
        policy.predict_proba(questions.drop(columns="subject"))
    assert len(policy.bases_[1].targets_) == 100  # the kNN base holds the 100 rows it read
    # an expert's stacker reads its partners: the experts measured on at least half of its questions
    assert all(len(p) == len(EXPERTS) for p in policy.partners_.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_probe_reads_its_regressions_bit_for_bit_as_scikit_learn_does(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 20))
    model = LogisticRegression(C=0.1).fit(x, x[:, 0] + rng.normal(size=300) > 0)
    for rows in (rng.normal(size=(1, 20)), rng.normal(size=(257, 20))):
        rows = rows.astype(dtype)
        assert np.array_equal(_success_proba(model, rows), model.predict_proba(rows)[:, 1])
