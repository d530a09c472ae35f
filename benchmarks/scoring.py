"""Live expert scoring speed: questions per second for each live expert of a profile on CPU, and the
wall time of leeroo_lib.experts.scoring against one direct lm_eval.simple_evaluate call on the same
questions, model and task (both load the model; the ratio should stay at or below 1.1).

    python benchmarks/scoring.py [--profile cpu] [--subjects 4] [--per-subject 3] [--repeats 2]

Printed, and written to ``results/bench_scoring.csv`` (one row per live expert).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lm_eval
import pandas as pd

from leeroo_lib.config import load_profile
from leeroo_lib.data.benchmarks import load_mmlu
from leeroo_lib.data.suites import load_recorded_scores
from leeroo_lib.experts.live_models import model_source
from leeroo_lib.experts.scoring import (
    load_expert_model,
    score_expert,
    select_questions,
    task_manager,
    task_name,
    write_local_tasks,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--subjects", type=int, default=4, help="the first N MMLU subjects")
    parser.add_argument("--per-subject", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    cfg = load_profile(args.profile)
    settings = cfg.scoring
    questions = load_mmlu()
    subjects = sorted(questions["subject"].unique())[: args.subjects]
    picked = select_questions(questions, args.per_subject, cfg.seed, subjects, load_recorded_scores().index)
    shots, batch = settings.num_fewshot, settings.batch_size
    print(
        f"profile {cfg.name}: {len(picked)} questions ({args.per_subject} in each of {subjects}), "
        f"{shots}-shot, batch {batch}, chunks of {settings.chunk_size}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        task_dir = write_local_tasks(questions, Path(tmp) / "tasks", subjects)
        for entry in settings.live_experts:
            pretrained = model_source(entry)  # a GGUF is converted before timing: a one-off cost, cached

            def project():
                path = Path(tmp) / "scores.parquet"
                path.unlink(missing_ok=True)
                score_expert(
                    lambda: load_expert_model(entry, batch, cfg.device),
                    picked,
                    path,
                    shots,
                    task_dir,
                    settings.chunk_size,
                    cfg.seed,
                )

            def direct():
                tasks = {task_name(s, task_dir): s for s in subjects}
                lm_eval.simple_evaluate(
                    model="hf",
                    model_args={"pretrained": pretrained, "device": cfg.device},
                    tasks=list(tasks),
                    num_fewshot=shots,
                    batch_size=batch,
                    task_manager=task_manager(task_dir),
                    samples={t: picked.loc[picked["subject"] == s, "idx"].tolist() for t, s in tasks.items()},
                    log_samples=True,
                    bootstrap_iters=0,
                    verbosity="ERROR",
                )

            # alternating order, best of `repeats`: the first run also warms caches (files, datasets)
            times = {"project": [], "direct": []}
            for run in range(args.repeats):
                for name, fn in (
                    (("direct", direct), ("project", project))
                    if run % 2 == 0
                    else (("project", project), ("direct", direct))
                ):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
            project_s, direct_s = min(times["project"]), min(times["direct"])
            print(
                f"{entry.name}: {len(picked) / project_s:.2f} questions/s through leeroo_lib.experts.scoring "
                f"({project_s:.1f} s with model loading), lm_eval directly {direct_s:.1f} s, "
                f"ratio {project_s / direct_s:.2f} (best of {args.repeats} each)"
            )
            rows.append(
                {
                    "expert": entry.name,
                    "questions": len(picked),
                    "questions_per_s": len(picked) / project_s,
                    "project_s": project_s,
                    "direct_s": direct_s,
                    "ratio": project_s / direct_s,
                    "repeats": args.repeats,
                }
            )
    pd.DataFrame(rows).to_csv(cfg.output_path("results", "bench_scoring.csv"), index=False)


if __name__ == "__main__":
    main()
