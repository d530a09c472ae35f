"""What 4-bit costs an expert, the paper's premise: each live model scored in fp32 and in NF4.

The paper serves its 7B-34B experts in 4-bit (bitsandbytes NF4) on one GPU. Here each in-process
live expert of the profile is scored twice on the same questions, at full precision and in NF4,
with the same lm-eval task and settings; the table says what the 4-bit copy keeps (its letters,
its loglikelihoods, its accuracy) and what it saves (memory) or costs (time). Scores are stored
per (expert, precision) like any live expert's and resume from there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Profile
from ..data.benchmarks import MMLU_LETTERS
from .scoring import live_sample, load_expert_model, safe_name, score_job, scores_path, select_questions

PRECISIONS = {"fp32": False, "nf4": True}  # name -> load_in_4bit
REFERENCE = "fp32"
LOGLIKS = [f"loglik_{c}" for c in MMLU_LETTERS]


def precision_path(profile: Profile, entry, precision: str):
    """The score file of one live expert at one precision: its live score file at the precision it is scored at."""
    if entry.load_in_4bit == PRECISIONS[precision]:
        return scores_path(profile, entry.name)
    return profile.output_path("data", "scores", "quantization", f"{safe_name(entry.name)}.{precision}.parquet")


def quantization_sample(profile: Profile, questions: pd.DataFrame, among: pd.Index | None = None) -> pd.DataFrame:
    """``scoring.quantization.questions_per_subject`` of each subject (all when None), drawn (seeded)
    from the live experts' own sample, so the comparison reads questions the profile scores anyway."""
    per_subject = profile.scoring.quantization.questions_per_subject
    return select_questions(live_sample(profile, questions, among), per_subject, profile.seed)


def compare(rows: dict[str, pd.DataFrame], reference: pd.DataFrame) -> list[dict]:
    """Accuracy of each precision's rows and how close they stay to the reference rows (same questions)."""
    keys = ["subject", "idx"]
    out = []
    for precision, scored in rows.items():
        both = reference.merge(scored, on=keys, suffixes=("_ref", ""), validate="one_to_one")
        ref, own = both[[f"{c}_ref" for c in LOGLIKS]].to_numpy(float), both[LOGLIKS].to_numpy(float)
        out.append(
            {
                "precision": precision,
                "n_questions": len(both),
                "accuracy": both["correct"].mean(),
                "same_letter_share": (both["pred"] == both["pred_ref"]).mean(),
                "loglik_corr": np.corrcoef(ref.ravel(), own.ravel())[0, 1],
                "seconds": both["seconds"].sum(),
            }
        )
    return out


def quantization_table(profile: Profile, questions: pd.DataFrame, among: pd.Index | None = None) -> pd.DataFrame:
    """One row per in-process live expert and precision of ``scoring.quantization.precisions``:
    expert, precision, n_questions, accuracy, same_letter_share and loglik_corr (against fp32 on the
    same questions), memory_mb (the loaded model's footprint) and seconds (scoring time, no loading).

    The precision the expert is live-scored at reads its rows from the live score file (the questions are drawn
    from that sample), so notebook 01 scores each of those questions once."""
    settings = profile.scoring.quantization
    picked = quantization_sample(profile, questions, among)
    table = []
    for entry in profile.scoring.live_experts:
        if entry.backend != "hf":
            continue  # a served expert's precision is the server's
        rows, memory = {}, {}
        for precision in settings.precisions:
            at_precision = entry.model_copy(update={"load_in_4bit": PRECISIONS[precision]})
            # loaded even when every row is stored: its footprint is part of the table
            lm = load_expert_model(at_precision, profile.scoring.batch_size, profile.device)
            memory[precision] = lm.model.get_memory_footprint() / 2**20
            rows[precision] = score_job(
                profile, questions, at_precision, picked, precision_path(profile, entry, precision), model=lm
            )
            del lm
        for row in compare(rows, rows[REFERENCE]):
            table.append({"expert": entry.name, **row, "memory_mb": memory[row["precision"]]})
    columns = [
        "expert",
        "precision",
        "n_questions",
        "accuracy",
        "same_letter_share",
        "loglik_corr",
        "memory_mb",
        "seconds",
    ]
    return pd.DataFrame(table, columns=columns)
