"""eval(e_j(q_i)) for live experts: MMLU scored by lm-evaluation-harness, one row per question.

lm-eval does the scoring (k-shot loglikelihood of the letters A-D, as the paper); this module
only picks the questions, writes the task definition, loads the expert through one of lm-eval's
models, and stores the per-question results so an interrupted run continues where it stopped.

Tasks, one per subject as in lm-eval's own ``mmlu``:
- ``local``: the project's question file (``load_mmlu``) written as JSON, read by lm-eval through
  ``dataset_path: json``. MMLU's offline copy has no dev split, so the k shots are the first k test
  questions of the same subject, never the question itself (lm-eval's ``first_n`` sampler drops
  the evaluated document, and any copy of it, from the pool when the shots come from the test split).
- ``mmlu``: lm-eval's standard ``mmlu_<subject>`` tasks (``cais/mmlu`` from the hub, dev-split shots).
In both a document's position in its subject's test split is the question's ``idx``.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from .data import LETTERS
from .live_models import model_source, nf4_config

BACKENDS = ("hf", "local-completions")
SCORE_COLUMNS = ["subject", "idx", *[f"loglik_{c}" for c in LETTERS], "pred", "answer", "correct", "protocol"]
ENDPOINT_TIMEOUT_S = 2.0

MMLU_TEMPLATE = {
    "test_split": "test",
    "fewshot_split": "test",
    "fewshot_config": {"sampler": "first_n"},
    "output_type": "multiple_choice",
    "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
    "doc_to_choice": list(LETTERS),
    "doc_to_target": "answer",
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    "metadata": {"version": 1.0},
}


def safe_name(expert: str) -> str:
    """A file name for an expert name (``org/model (live)`` -> ``org__model_live``)."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in expert.replace("/", "__")).strip("_")


def protocol(num_fewshot: int, task: str) -> str:
    """How a live expert was scored (``task``: 'local' or 'mmlu'), stored with every row and shown in the tables."""
    shots = {"local": "shots: first test questions of the subject", "mmlu": "shots: MMLU dev split"}
    if task not in shots:
        raise ValueError(f"scoring task must be 'local' or 'mmlu', not '{task}'")
    return f"lm-eval {num_fewshot}-shot loglikelihood ({task} task, {shots[task]})"


def select_questions(questions: pd.DataFrame, per_subject: int | None, seed: int, subjects=None,
                     among: pd.Index | None = None) -> pd.DataFrame:
    """A seeded sample of ``per_subject`` questions from each subject (every question when None; all
    subjects when ``subjects`` is None), drawn from the rows of ``among`` ((subject, idx)) when given."""
    pool = questions if subjects is None else questions[questions["subject"].isin(subjects)]
    if subjects is not None and set(subjects) - set(pool["subject"]):
        raise ValueError(f"unknown MMLU subject(s) {sorted(set(subjects) - set(pool['subject']))}")
    if among is not None:
        pool = pool[pd.MultiIndex.from_frame(pool[["subject", "idx"]]).isin(among)]
    if per_subject is not None:
        pool = pool.groupby("subject", group_keys=False).sample(n=per_subject, random_state=seed)
    return pool.sort_values(["subject", "idx"]).reset_index(drop=True)


def write_local_tasks(questions: pd.DataFrame, folder: Path, subjects) -> Path:
    """One lm-eval task per subject on the project's own question file: every test question of the
    subject in idx order (so a document's position is its idx), the pool the shots come from too."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        rows = questions[questions["subject"] == subject].sort_values("idx")
        if not (rows["idx"].to_numpy() == np.arange(len(rows))).all():
            raise ValueError(f"questions of '{subject}' must be its whole test file (idx 0..n-1), as load_mmlu gives")
        data_file = folder / f"{subject}.jsonl"
        # Only the text goes in: a repeated MMLU question is then equal to its copy, and both leave the shot pool.
        data_file.write_text("".join(
            json.dumps({"question": q, "choices": list(c), "answer": int(a)}) + "\n"
            for q, c, a in zip(rows["question"], rows["choices"], rows["answer"])
        ))
        task = {
            **MMLU_TEMPLATE,
            "task": task_name(subject, folder),
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data_file)}},
            "description": f"The following are multiple choice questions (with answers) about "
                           f"{subject.replace('_', ' ')}.\n\n",
        }
        (folder / f"{task['task']}.yaml").write_text(yaml.safe_dump(task, sort_keys=False))
    return folder


def task_name(subject: str, task_dir: Path | None) -> str:
    """The lm-eval task of a subject: the local one, or lm-eval's standard ``mmlu_<subject>``."""
    return f"leeroo_mmlu_{subject}" if task_dir is not None else f"mmlu_{subject}"


def check_endpoint(url: str, timeout: float = ENDPOINT_TIMEOUT_S) -> None:
    """Fail at once, naming the URL, when nothing listens at an expert's endpoint."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(
            f"expert endpoint {url} is unreachable ({err}); start the OpenAI-compatible server there "
            "(e.g. `vllm serve <model>`) or fix base_url in the profile's scoring.live_experts"
        ) from None


def _hf_model(pretrained: str, load_in_4bit: bool, batch_size, device: str):
    import torch
    from lm_eval.models.huggingface import HFLM

    is_path = Path(pretrained).expanduser().is_absolute() or pretrained.startswith(".")
    if is_path and not Path(pretrained).expanduser().exists():
        raise FileNotFoundError(f"model folder {pretrained} does not exist; fix `pretrained` in the profile")
    if load_in_4bit and not torch.cuda.is_available():
        raise RuntimeError(
            f"4-bit loading of {pretrained} needs a CUDA GPU (bitsandbytes) and torch sees none; "
            "set load_in_4bit: false for this expert or run on a GPU machine"
        )
    try:
        if not load_in_4bit:
            return HFLM(pretrained=pretrained, device=device, dtype="auto", batch_size=batch_size)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(pretrained, device_map={"": 0}, quantization_config=nf4_config())
        return HFLM(pretrained=model, tokenizer=AutoTokenizer.from_pretrained(pretrained), batch_size=batch_size)
    except OSError as err:
        raise ValueError(
            f"cannot load model '{pretrained}': it is neither a local model folder nor reachable on the "
            f"Hugging Face hub ({str(err).splitlines()[0]}); check the id, or the network for the hub"
        ) from None


def load_expert_model(entry: dict, batch_size=1, device: str = "cpu"):
    """The lm-eval model object of one live expert from its profile entry.

    ``backend: hf`` with ``pretrained`` (hub id or folder) or ``gguf`` ({package, file, assemble})
    and optionally ``load_in_4bit``; ``backend: local-completions`` with ``model_args`` passed to
    lm-eval's ``local-completions`` (base_url, model, tokenizer, ...).
    """
    backend = entry.get("backend")
    if backend == "hf":
        return _hf_model(model_source(entry), bool(entry.get("load_in_4bit", False)), batch_size, device)
    if backend == "local-completions":
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        check_endpoint(entry["model_args"]["base_url"])
        return LocalCompletionsAPI(batch_size=batch_size, **entry["model_args"])
    raise ValueError(f"expert '{entry.get('name')}': unknown backend '{backend}', use one of {BACKENDS}")


def task_manager(task_dir: Path | None):
    """lm-eval's TaskManager: the local task folder alone, or lm-eval's built-in tasks (``None``)."""
    from lm_eval.tasks import TaskManager

    if task_dir is None:
        return TaskManager()
    return TaskManager(include_path=str(task_dir), include_defaults=False)


def evaluate_questions(lm, questions: pd.DataFrame, num_fewshot: int, task_dir: Path | None, manager=None,
                       seed: int = 0):
    """Score ``questions`` with lm-eval in one call: (one row per question, lm-eval's results dict).

    ``task_dir``: the folder of ``write_local_tasks``, or None for lm-eval's standard ``mmlu`` tasks.
    """
    import lm_eval

    subjects = sorted(questions["subject"].unique())
    if task_dir is not None:
        missing = [str(Path(task_dir) / f"{s}.jsonl") for s in subjects if not (Path(task_dir) / f"{s}.jsonl").is_file()]
        if missing:
            raise FileNotFoundError(
                f"question file(s) of the local MMLU task missing: {missing[:3]}; "
                "write them with leeroo_lib.scoring.write_local_tasks(load_mmlu(), task_dir, subjects)"
            )
    names = {task_name(s, task_dir): s for s in subjects}
    results = lm_eval.simple_evaluate(
        model=lm, tasks=list(names), num_fewshot=num_fewshot, task_manager=manager or task_manager(task_dir),
        samples={t: sorted(questions.loc[questions["subject"] == s, "idx"].tolist()) for t, s in names.items()},
        log_samples=True, bootstrap_iters=0, random_seed=seed, numpy_random_seed=seed,
        torch_random_seed=seed, fewshot_random_seed=seed, verbosity="ERROR",
    )
    rows = []
    for name, samples in results["samples"].items():
        for sample in samples:
            loglik = [float(resp[0]) for resp in sample["filtered_resps"]]
            pred = int(np.argmax(loglik))
            rows.append({"subject": names[name], "idx": int(sample["doc_id"]),
                         **{f"loglik_{c}": v for c, v in zip(LETTERS, loglik)},
                         "pred": LETTERS[pred], "answer": LETTERS[int(sample["target"])],
                         "correct": int(pred == int(sample["target"]))})
    scored = pd.DataFrame(rows).sort_values(["subject", "idx"]).reset_index(drop=True)
    return scored.assign(protocol=protocol(num_fewshot, "mmlu" if task_dir is None else "local")), results


def read_scores(path: Path) -> pd.DataFrame:
    """The stored per-question results of one expert (empty when none yet)."""
    path = Path(path)
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=SCORE_COLUMNS)


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[["subject", "idx"]].astype({"idx": int}))


def score_expert(make_model, questions: pd.DataFrame, path: Path, num_fewshot: int, task_dir: Path | None,
                 chunk_size: int, seed: int = 0, desc: str | None = None) -> pd.DataFrame:
    """Score every question of ``questions`` not yet in ``path``, ``chunk_size`` at a time, appending
    each finished chunk to the parquet file, so a rerun after an interruption skips what is stored.

    ``make_model``: a zero-argument callable giving the lm-eval model, called only when there is work.
    Returns the stored rows of ``questions``.
    """
    path = Path(path)
    done = read_scores(path)
    wanted = protocol(num_fewshot, "mmlu" if task_dir is None else "local")
    if len(done) and set(done["protocol"]) != {wanted}:
        raise ValueError(
            f"{path} holds scores made with {sorted(set(done['protocol']))}, not '{wanted}'; "
            "delete the file to rescore with the new settings"
        )
    todo = questions[~_keys(questions).isin(_keys(done))].sort_values(["subject", "idx"])
    if len(todo):
        lm, manager = make_model(), task_manager(task_dir)
        with tqdm(total=len(questions), initial=len(questions) - len(todo), desc=desc or path.stem, unit="q") as bar:
            for start in range(0, len(todo), chunk_size):
                scored, _ = evaluate_questions(lm, todo.iloc[start:start + chunk_size], num_fewshot, task_dir,
                                               manager, seed)
                done = scored if done.empty else pd.concat([done, scored], ignore_index=True)
                partial = path.with_suffix(".partial")
                done.to_parquet(partial, index=False)
                partial.replace(path)  # a chunk is stored whole or not at all
                bar.update(len(scored))
    mine = done[_keys(done).isin(_keys(questions))]
    return mine.sort_values(["subject", "idx"]).reset_index(drop=True)


def score_live_experts(cfg, questions: pd.DataFrame, among: pd.Index | None = None) -> dict[str, pd.DataFrame]:
    """Score each live expert of the profile's ``scoring`` block on its question sample; each
    expert's rows go to ``<output root>/data/scores/<expert>.parquet`` and resume from there."""
    settings = cfg["scoring"]
    picked = select_questions(questions, settings["questions_per_subject"], cfg.seed,
                              settings.get("subjects"), among)
    protocol(settings["num_fewshot"], settings["task"])  # fails early on an unknown task
    task_dir = None
    if settings["task"] == "local":
        task_dir = write_local_tasks(questions, cfg.output_root / "data" / "scores" / "tasks", picked["subject"].unique())
    return {
        entry["name"]: score_expert(
            lambda entry=entry: load_expert_model(entry, settings["batch_size"], cfg["device"]),
            picked, cfg.output_path("data", "scores", f"{safe_name(entry['name'])}.parquet"),
            settings["num_fewshot"], task_dir, settings["chunk_size"], cfg.seed, desc=entry["name"],
        )
        for entry in settings["live_experts"]
    }


def merge_score_matrix(recorded: pd.DataFrame, live: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The recorded matrix with one more column per live expert: its 0/1 ``correct`` on the
    questions it was scored on, NaN elsewhere; rows stay those of the recorded matrix."""
    columns = {name: scores.set_index(["subject", "idx"])["correct"].astype(np.float64)
               for name, scores in live.items()}
    return recorded.join(pd.DataFrame(columns), how="left")


def letter_baseline(live: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per live expert: accuracy beside chance (0.25) and the letter-bias baseline, the accuracy of
    always answering the letter the expert itself predicts most often, on the same questions."""
    rows = []
    for name, scores in live.items():
        favourite = scores["pred"].value_counts().idxmax()
        rows.append({
            "expert": name,
            "n_questions": len(scores),
            "accuracy": scores["correct"].mean(),
            "chance": 1 / len(LETTERS),
            "most_frequent_letter": favourite,
            "share_of_predictions": (scores["pred"] == favourite).mean(),
            "letter_bias_baseline": (scores["answer"] == favourite).mean(),
        })
    return pd.DataFrame(rows)


def letter_distribution(live: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Share of each letter among each live expert's predictions, and among the gold answers (of the
    first expert's questions: the live experts of a profile share one sample)."""
    gold = next(iter(live.values()))["answer"] if live else pd.Series(dtype=str)
    columns = {name: scores["pred"] for name, scores in live.items()} | {"gold answer": gold}
    return pd.DataFrame({
        name: letters.value_counts(normalize=True).reindex(list(LETTERS), fill_value=0.0)
        for name, letters in columns.items()
    })
