"""The frozen MiniLM encoder in fp32 against torch's dynamic int8 quantization: speed, and whether routing reads
the same from it.

    python benchmarks/encoder.py [--profile cpu] [--pool pro-open] [--train 2000] [--test 1000]

On ``--train`` training and ``--test`` test questions of the pool's benchmark (seeded), each encoder embeds every
question (timed, one process, the profile's ``policy.embedding_max_length``); then the kNN policy and the logistic
probe read the pool's served experts from each encoder's vectors. A faster encoder is worth keeping only if the
routing signal stays: the within-subject AUC within 0.002 of fp32's. Printed, and written to
``results/bench_encoder.csv`` (one row per encoder).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from leeroo_lib.config import load_profile
from leeroo_lib.data.benchmarks import load_questions
from leeroo_lib.data.embeddings import SentenceEmbedder, minilm_path, no_loading_bar
from leeroo_lib.data.splits import split_index
from leeroo_lib.evaluation.policy_signal import policy_signal
from leeroo_lib.routing.policies import score_targets
from leeroo_lib.routing.policies.embedding import KNNPolicy, LogisticProbePolicy
from leeroo_lib.routing.pools import served_experts

AUC_TOLERANCE = 0.002


def int8_embedder(max_length: int) -> SentenceEmbedder:
    """A ``SentenceEmbedder`` whose MiniLM has its linear layers in int8 (torch's dynamic quantization)."""
    from transformers import AutoModel, AutoTokenizer

    embedder = SentenceEmbedder(max_length=max_length)
    with no_loading_bar():
        embedder._tokenizer = AutoTokenizer.from_pretrained(minilm_path())
        model = AutoModel.from_pretrained(minilm_path(), attn_implementation="sdpa").eval()
    embedder._model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--pool", default="pro-open")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    args = parser.parse_args()

    cfg = load_profile(args.profile)
    experts = served_experts(pd.read_csv(cfg.require("universe")))[args.pool]
    scores = pd.read_parquet(cfg.require("score_matrix"))[experts]
    splits = pd.read_csv(cfg.require("splits"))
    questions = load_questions(cfg.pools[args.pool].benchmark)
    keys = pd.MultiIndex.from_frame(questions[["subject", "idx"]])
    train = questions[keys.isin(split_index(splits, "train"))].sample(args.train, random_state=cfg.seed)
    test = questions[keys.isin(split_index(splits, "test"))].sample(args.test, random_state=cfg.seed)
    both = pd.concat([train, test], ignore_index=True)
    outcomes = score_targets(test, scores)
    max_length = cfg.policy.embedding_max_length

    rows, vectors = [], {}
    for name, embedder in [("fp32", SentenceEmbedder(max_length=max_length)), ("int8", int8_embedder(max_length))]:
        embedder.embed(both.head(1))  # the model loaded and warm before the clock starts
        embedder._memory.clear()
        start = time.perf_counter()
        vectors[name] = embedder.embed(both)
        seconds = time.perf_counter() - start
        agreement = (vectors[name] * vectors["fp32"]).sum(axis=1)
        signal = policy_signal(
            {
                "knn": KNNPolicy(cfg.policy.knn_neighbors, embedder, cfg.seed).fit(train, scores).predict_proba(test),
                "probe": LogisticProbePolicy(embedder, C=cfg.policy.stacked.C, subject=True, seed=cfg.seed)
                .fit(train, scores)
                .predict_proba(test),
            },
            outcomes,
            test["subject"],
        )
        within = signal.groupby("policy")["auc_within_subject"].mean()
        rows.append(
            {
                "encoder": name,
                "questions": len(both),
                "seconds": seconds,
                "questions_per_s": len(both) / seconds,
                "cosine_to_fp32_mean": float(agreement.mean()),
                "cosine_to_fp32_min": float(agreement.min()),
                "knn_auc_within_subject": within["knn"],
                "probe_auc_within_subject": within["probe"],
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    for policy in ("knn", "probe"):
        column = f"{policy}_auc_within_subject"
        table[f"{policy}_auc_change"] = table[column] - table.loc[table["encoder"] == "fp32", column].iloc[0]
    table["kept"] = np.all(table[["knn_auc_change", "probe_auc_change"]].abs() <= AUC_TOLERANCE, axis=1)
    path = cfg.output_path("results", "bench_encoder.csv")
    table.to_csv(path, index=False)
    print(table.round(4).to_string(index=False))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
