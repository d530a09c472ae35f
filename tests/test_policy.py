import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from leeroo_lib.policies import (
    POLICIES,
    CausalLMPolicy,
    EncoderPolicy,
    KNNPolicy,
    LogisticProbePolicy,
    MatrixFactorizationPolicy,
    OraclePolicy,
    PriorPolicy,
    RandomPolicy,
    StackedPolicy,
    SubjectPolicy,
    most_evaluated,
    policy_class,
    score_targets,
    training_questions,
)
from leeroo_lib.policies.training import masked_bce
from leeroo_lib.splits import make_splits, split_index

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


def real_subset(questions, n=24):
    """Real MMLU text with synthetic outcomes: what a language-model policy needs to run."""
    subset = questions[questions["subject"].isin(["abstract_algebra", "professional_law"])]
    subset = subset.groupby("subject").head(n // 2).reset_index(drop=True)
    algebra = (subset["subject"] == "abstract_algebra").to_numpy()
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


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_every_policy_kind_saves_and_reloads_through_the_registry(questions, kind, tmp_path):
    subset, scores = real_subset(questions, n=8 if kind == "CausalLMPolicy" else 24)
    policy = small_policy(kind, scores).fit(subset, scores)
    proba = policy.predict_proba(subset)
    assert proba.index.equals(subset.index) and list(proba.columns) == EXPERTS
    assert ((proba >= 0) & (proba <= 1) | proba.isna()).all().all()
    policy.save(tmp_path)
    reloaded = policy_class(kind).load(tmp_path)
    assert type(reloaded) is type(policy)
    np.testing.assert_allclose(reloaded.predict_proba(subset), proba, atol=1e-5)


def test_encoder_policy_learns_from_the_question_text(questions):
    subset, scores = real_subset(questions)
    policy = small_policy("EncoderPolicy", scores).fit(subset, scores)
    assert list(policy.history_.columns) == ["epoch", "train_loss", "val_loss"]
    proba = policy.predict_proba(subset)
    algebra = (subset["subject"] == "abstract_algebra").to_numpy()
    assert proba["algebraist"][algebra].mean() > proba["algebraist"][~algebra].mean()


def test_unknown_policy_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown policy kind 'Nope'.*EncoderPolicy"):
        policy_class("Nope")


def test_light_modules_do_not_import_torch():
    """The orchestrator, evaluation and universe are light: a fresh interpreter imports them without torch
    (the serving process and the scoring command line would pay seconds for it)."""
    code = (
        "import sys; import leeroo_lib.universe, leeroo_lib.evaluate, leeroo_lib.aiq, leeroo_lib.orchestrator, "
        "leeroo_lib.config, leeroo_lib.policies, leeroo_lib.pools; print(sorted(m for m in ('torch', 'transformers') "
        "if m in sys.modules))"
    )
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
