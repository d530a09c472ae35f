"""Frozen sentence embeddings kept on disk, so no question is embedded twice across runs.

``policy.SentenceEmbedder`` (all-MiniLM-L6-v2, mean pooled, unit length) remembers vectors for the
life of one object; on 2 CPU cores embedding all of MMLU takes minutes, so a notebook rerun, or
several notebooks of one profile, should share them. The cache is a folder of chunk files keyed by
``qkey``: an interrupted run keeps every chunk it finished and resumes after it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .policy import SentenceEmbedder


class CachedSentenceEmbedder(SentenceEmbedder):
    """A ``SentenceEmbedder`` whose vectors persist in ``cache_dir``, ``chunk_size`` questions a file."""

    def __init__(self, cache_dir: Path, chunk_size: int = 512, max_length: int = 128, batch_size: int = 64):
        super().__init__(max_length=max_length, batch_size=batch_size)
        self.cache_dir = Path(cache_dir)
        self.chunk_size = chunk_size
        self._loaded: set[str] = set()

    def _chunks(self) -> list[Path]:
        return sorted(self.cache_dir.glob("chunk_*.npz"))

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
        todo = todo[~todo["qkey"].isin(self._memory.keys())]
        starts = range(0, len(todo), self.chunk_size)
        for start in tqdm(starts, desc="embedding questions", unit="chunk", disable=len(starts) < 2):
            part = todo.iloc[start:start + self.chunk_size]
            vectors = super().embed(part)
            name = f"chunk_{len(self._chunks()):05d}.npz"
            np.savez(self.cache_dir / name, qkey=part["qkey"].to_numpy(str), vector=vectors.astype(np.float32))
            self._loaded.add(name)
        return np.stack([self._memory[k] for k in questions["qkey"]])

    def __getstate__(self):
        return {**super().__getstate__(), "cache_dir": self.cache_dir, "chunk_size": self.chunk_size,
                "_loaded": set()}
