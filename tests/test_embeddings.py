"""The embeddings cache: a question is embedded once, across objects and runs, and a chunk on disk is never lost."""

import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leeroo_lib.data.embeddings import CachedSentenceEmbedder, SentenceEmbedder, uncached_copy


@pytest.fixture
def model_calls(monkeypatch):
    """The language model replaced by a stand-in that records the qkeys it is asked to embed and remembers
    their vectors, as ``SentenceEmbedder.embed`` does; the vector of ``q<i>`` is ``[i, 1]``."""
    calls = []

    def embed(self, questions):
        calls.append(list(questions["qkey"]))
        vectors = np.array([[float(key[1:]), 1.0] for key in questions["qkey"]])
        self._memory.update(zip(questions["qkey"], vectors))
        return vectors

    monkeypatch.setattr(SentenceEmbedder, "embed", embed)
    return calls


def frame(*numbers: int) -> pd.DataFrame:
    return pd.DataFrame({"qkey": [f"q{i}" for i in numbers]})


def chunks(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_miss_embeds_each_new_question_once_and_writes_it_in_chunks(tmp_path, model_calls):
    vectors = CachedSentenceEmbedder(tmp_path, chunk_size=2).embed(frame(0, 1, 2, 1, 3, 4))
    assert model_calls == [["q0", "q1"], ["q2", "q3"], ["q4"]]  # q1 asked twice, embedded once
    np.testing.assert_array_equal(vectors[:, 0], [0, 1, 2, 1, 3, 4])  # in the order asked
    assert chunks(tmp_path) == ["chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz"]


def test_a_hit_reads_the_chunks_of_an_earlier_run_and_embeds_only_what_is_new(tmp_path, model_calls):
    CachedSentenceEmbedder(tmp_path, chunk_size=2).embed(frame(0, 1, 2))
    model_calls.clear()
    later = CachedSentenceEmbedder(tmp_path, chunk_size=2)  # another run: nothing in memory
    np.testing.assert_array_equal(later.embed(frame(2, 0)), [[2, 1], [0, 1]])
    assert model_calls == []
    later.embed(frame(0, 5, 2))
    assert model_calls == [["q5"]]
    # a pickled embedder (inside a saved policy) keeps no vectors, and reads them back from its folder
    model_calls.clear()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(later)).embed(frame(5, 1)), [[5, 1], [1, 1]])
    assert model_calls == []


def test_new_chunks_are_numbered_after_the_last_and_never_overwrite_one(tmp_path, model_calls):
    CachedSentenceEmbedder(tmp_path, chunk_size=2).embed(frame(0, 1, 2, 3))
    CachedSentenceEmbedder(tmp_path, chunk_size=2).embed(frame(4))
    assert chunks(tmp_path) == ["chunk_00000.npz", "chunk_00001.npz", "chunk_00002.npz"]
    (tmp_path / "chunk_00000.npz").unlink()  # a damaged chunk deleted: its questions are embedded again
    model_calls.clear()
    CachedSentenceEmbedder(tmp_path, chunk_size=2).embed(frame(0, 1, 2, 3, 4))
    assert model_calls == [["q0", "q1"]]
    assert chunks(tmp_path) == ["chunk_00001.npz", "chunk_00002.npz", "chunk_00003.npz"]
    model_calls.clear()
    vectors = CachedSentenceEmbedder(tmp_path).embed(frame(4, 3, 2, 1, 0))
    assert model_calls == []  # every vector is still on disk
    np.testing.assert_array_equal(vectors[:, 0], [4, 3, 2, 1, 0])


def test_a_policy_copied_for_a_service_embeds_past_the_run_cache_everywhere_and_forgets(tmp_path, model_calls):
    cached = CachedSentenceEmbedder(tmp_path, max_length=64)
    policy = SimpleNamespace(embedder=cached, bases_=[SimpleNamespace(embedder=cached)])  # as StackedPolicy's
    served, plain = uncached_copy(policy)
    assert type(plain) is SentenceEmbedder and plain.max_length == 64
    assert served.embedder is plain and served.bases_[0].embedder is plain  # one encoder, shared as before
    assert policy.embedder is cached and policy.bases_[0].embedder is cached  # the saved policy is untouched
    plain.embed(frame(7, 8))
    assert chunks(tmp_path) == [] and len(plain._memory) == 2  # nothing written into the run's cache
    plain.forget()
    assert plain._memory == {}
    unembedded = SimpleNamespace(experts_=["a"])
    assert uncached_copy(unembedded) == (unembedded, None)
