"""eval(e_j(q_i)) for live experts: MMLU scored by lm-evaluation-harness, one row per question.

lm-eval does the scoring; this module only picks the questions, writes the task definition, loads
the expert through one of lm-eval's models, and stores the per-question results so an interrupted
run continues where it stopped. Two methods, stored with every row (``protocol``):
- ``loglikelihood`` (the paper's): the letter A-D with the highest k-shot loglikelihood. Needs the
  model's logprobs: in-process (``hf``, fp32 or NF4 4-bit, CPU or GPU) or a server that returns prompt
  logprobs (``local-completions``, e.g. vLLM).
- ``generative`` (the protocol of the recorded Mixtral and GPT-4 columns): the expert answers in its
  chat format, greedily, and a regex filter of the task takes the letter from the reply. Works with
  any OpenAI-compatible server (``local-chat-completions``) and in-process (``hf``).

Tasks, one per subject as in lm-eval's own ``mmlu``:
- ``local``: the project's question file (``load_mmlu``) written as JSON, read by lm-eval through
  ``dataset_path: json``. MMLU's offline copy has no dev split, so the k shots are the first k test
  questions of the same subject, never the question itself (lm-eval's ``first_n`` sampler drops
  the evaluated document, and any copy of it, from the pool when the shots come from the test split).
- ``mmlu``: lm-eval's standard ``mmlu_<subject>`` tasks (``cais/mmlu`` from the hub, dev-split shots);
  loglikelihood only.
In both a document's position in its subject's test split is the question's ``idx``.

At scale, one job per (expert, shard) from the command line, each writing its own file and task
folder, then one merge (``leeroo score --help``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml
from tqdm.auto import tqdm

from ..config import LiveExpert, Profile
from ..data.benchmarks import MMLU_LETTERS
from ..data.embeddings import no_loading_bar
from .catalog import protocol
from .live_models import model_source, nf4_model

# The methods each backend can score with; the first is its default.
SCORE_COLUMNS = [
    "subject",
    "idx",
    *[f"loglik_{c}" for c in MMLU_LETTERS],
    "pred",
    "answer",
    "correct",
    "protocol",
    "seconds",
]
ENDPOINT_TIMEOUT_S = 2.0
# The reply's letter: the one it starts with ("B", "(B)", "B. text"), else the one after "answer (is)".
LETTER_PATTERN = r"^\W*([A-D])\b|[Aa]nswer(?: is)?\W*([A-D])\b"
NO_LETTER = "[invalid]"

MMLU_TEMPLATE = {
    "test_split": "test",
    "fewshot_split": "test",
    "fewshot_config": {"sampler": "first_n"},
    "output_type": "multiple_choice",
    "doc_to_text": "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\n"
    "C. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
    "doc_to_choice": list(MMLU_LETTERS),
    "doc_to_target": "answer",
    "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    "metadata": {"version": 1.0},
}
# The same documents and prompt, answered by greedy generation; lm-eval's regex filter takes the letter.
GENERATIVE_TEMPLATE = {
    **{k: v for k, v in MMLU_TEMPLATE.items() if k not in ("doc_to_choice", "metric_list")},
    "output_type": "generate_until",
    "doc_to_target": "{{['A', 'B', 'C', 'D'][answer]}}",
    "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": 16, "do_sample": False, "temperature": 0.0},
    "filter_list": [
        {
            "name": "letter",
            "filter": [
                {"function": "regex", "regex_pattern": LETTER_PATTERN, "fallback": NO_LETTER},
                {"function": "take_first"},
            ],
        }
    ],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
}


def safe_name(expert: str) -> str:
    """A file name for an expert name (``org/model (live)`` -> ``org__model_live``)."""
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in expert.replace("/", "__")).strip("_")


def select_questions(
    questions: pd.DataFrame, per_subject: int | None, seed: int, subjects=None, among: pd.Index | None = None
) -> pd.DataFrame:
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


def shard_of(questions: pd.DataFrame, shard: tuple[int, int] | None) -> pd.DataFrame:
    """Part ``i`` of ``n`` contiguous, near-equal parts of the (subject, idx)-sorted questions (all when None)."""
    if shard is None:
        return questions
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard {i}/{n}: the index must be in 0..{n - 1}")
    ordered = questions.sort_values(["subject", "idx"]).reset_index(drop=True)
    return ordered.iloc[np.array_split(np.arange(len(ordered)), n)[i]].reset_index(drop=True)


def _write_if_changed(path: Path, text: str) -> None:
    """Leave an identical file untouched, so lm-eval's dataset cache (keyed on the file) stays valid."""
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def write_local_tasks(questions: pd.DataFrame, folder: Path, subjects) -> Path:
    """One lm-eval task per subject and method on the project's own question file: every test
    question of the subject in idx order (so a document's position is its idx), the pool the shots
    come from too. Each scoring job writes its own folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for subject in subjects:
        rows = questions[questions["subject"] == subject].sort_values("idx")
        if not (rows["idx"].to_numpy() == np.arange(len(rows))).all():
            raise ValueError(f"questions of '{subject}' must be its whole test file (idx 0..n-1), as load_mmlu gives")
        data_file = folder / f"{subject}.jsonl"
        # Only the text goes in: a repeated MMLU question is then equal to its copy, and both leave the shot pool.
        _write_if_changed(
            data_file,
            "".join(
                json.dumps({"question": q, "choices": list(c), "answer": int(a)}) + "\n"
                for q, c, a in zip(rows["question"], rows["choices"], rows["answer"])
            ),
        )
        for method, template in (("loglikelihood", MMLU_TEMPLATE), ("generative", GENERATIVE_TEMPLATE)):
            task = {
                **template,
                "task": task_name(subject, folder, method),
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(data_file)}},
                "description": f"The following are multiple choice questions (with answers) about "
                f"{subject.replace('_', ' ')}.\n\n",
            }
            _write_if_changed(folder / f"{task['task']}.yaml", yaml.safe_dump(task, sort_keys=False))
    return folder


def task_name(subject: str, task_dir: Path | None, method: str = "loglikelihood") -> str:
    """The lm-eval task of a subject: the local one, or lm-eval's standard ``mmlu_<subject>``."""
    if task_dir is None:
        return f"mmlu_{subject}"
    return f"leeroo_mmlu_{subject}" if method == "loglikelihood" else f"leeroo_mmlu_generative_{subject}"


def check_endpoint(url: str, timeout: float = ENDPOINT_TIMEOUT_S) -> None:
    """Fail at once, naming the URL, when nothing listens at an expert's endpoint."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise ConnectionError(
            f"expert endpoint {url} is unreachable ({err}); start the OpenAI-compatible server there "
            "(e.g. `vllm serve <model>` or `transformers serve <folder>`) or fix base_url in the profile's "
            "scoring.live_experts"
        ) from None


def check_prompt_logprobs(model_args: dict, timeout: float = 60.0) -> None:
    """Fail at once when a completions endpoint does not return prompt logprobs (``echo`` with
    ``logprobs``), which loglikelihood scoring needs; `transformers serve`, for one, ignores both."""
    import requests

    url = model_args["base_url"]
    reply = requests.post(
        url,
        json={
            "model": model_args.get("model"),
            "prompt": "The answer is",
            "max_tokens": 1,
            "logprobs": 1,
            "echo": True,
            "temperature": 0,
        },
        timeout=timeout,
    )
    choice = (reply.json().get("choices") or [{}])[0] if reply.ok else {}
    if not (choice.get("logprobs") or {}).get("token_logprobs"):
        raise ValueError(
            f"expert endpoint {url} returns no prompt logprobs (HTTP {reply.status_code}), which loglikelihood "
            "scoring needs: serve the model with vLLM (`vllm serve`), or score it generatively (backend: "
            "local-chat-completions, base_url .../v1/chat/completions)"
        )


def _continuation_head_hflm():
    """lm-eval's ``HFLM``, computing the LM head only at the positions a loglikelihood request reads when a
    forward pass holds one request (``batch_size: 1``).

    lm-eval asks the model for logits at every position, then keeps the continuation's. For a small model the
    head is much of the work (Gemma-3-270M's 262k-token vocabulary: most of it), so on CPU, where a batch buys
    little, one request at a time with the head at its last positions (``logits_to_keep``) scores faster, with
    the same logprobs to float rounding. A lone request has no padding, so those positions are the last ones,
    which lm-eval's slicing allows for; a batch of several keeps lm-eval's own call."""
    import functools
    import inspect

    import torch
    from lm_eval.models.huggingface import HFLM

    class ContinuationHeadHFLM(HFLM):
        def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
            self._keep = max((len(continuation) for _, _, continuation in requests), default=0)
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)

        def _model_call(self, inps, attn_mask=None, labels=None):
            keep = getattr(self, "_keep", 0)
            if inps.shape[0] != 1 or attn_mask is not None or not keep or not self._keeps_logits:
                return super()._model_call(inps, attn_mask, labels)
            with torch.no_grad():
                return self.model(inps, logits_to_keep=keep).logits

        @functools.cached_property
        def _keeps_logits(self) -> bool:  # the model is fixed once loaded: read its signature once, not per pass
            return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    return ContinuationHeadHFLM


def _hf_model(pretrained: str, load_in_4bit: bool, batch_size, device: str):
    is_path = Path(pretrained).expanduser().is_absolute() or pretrained.startswith(".")
    if is_path and not Path(pretrained).expanduser().exists():
        raise FileNotFoundError(f"model folder {pretrained} does not exist; fix `pretrained` in the profile")
    model_class = _continuation_head_hflm()
    try:
        with no_loading_bar():
            if not load_in_4bit:
                return model_class(pretrained=pretrained, device=device, dtype="auto", batch_size=batch_size)
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = nf4_model(AutoModelForCausalLM, pretrained, device)
            return model_class(
                pretrained=model, tokenizer=AutoTokenizer.from_pretrained(pretrained), batch_size=batch_size
            )
    except OSError as err:
        raise ValueError(
            f"cannot load model '{pretrained}': it is neither a local model folder nor reachable on the "
            f"Hugging Face hub ({str(err).splitlines()[0]}); check the id, or the network for the hub"
        ) from None


def load_expert_model(entry: LiveExpert, batch_size=1, device: str = "cpu"):
    """The lm-eval model object of one live expert from its profile entry.

    ``backend: hf`` with ``pretrained`` (hub id or folder) or ``gguf`` ({package, file, assemble})
    and optionally ``load_in_4bit`` (NF4, on CPU or GPU); ``backend: vllm`` (CUDA machines with vLLM)
    with ``pretrained`` and ``model_args`` for lm-eval's ``vllm`` model (data_parallel_size,
    quantization, ...); ``backend: local-completions`` or ``local-chat-completions`` with
    ``model_args`` passed to lm-eval's model of that name (base_url, model, and for completions the
    tokenizer).
    """
    backend, method = entry.backend, entry.method
    if backend == "hf":
        return _hf_model(model_source(entry), entry.load_in_4bit, batch_size, device)
    if backend == "vllm":
        try:
            from lm_eval.models.vllm_causallms import VLLM
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                f"expert '{entry.name}' has backend 'vllm', which needs vLLM and a CUDA GPU: "
                "`pip install vllm` there, or use backend: hf (in-process, 4-bit with load_in_4bit: true)"
            ) from None
        return VLLM(pretrained=model_source(entry), batch_size=batch_size, **(entry.model_args or {}))
    check_endpoint(entry.model_args["base_url"])
    if backend == "local-completions":
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        if method == "loglikelihood":
            check_prompt_logprobs(entry.model_args)
        return LocalCompletionsAPI(batch_size=batch_size, **entry.model_args)
    from lm_eval.models.openai_completions import LocalChatCompletion

    return LocalChatCompletion(**entry.model_args)


def task_manager(task_dir: Path | None):
    """lm-eval's TaskManager: the local task folder alone, or lm-eval's built-in tasks (``None``)."""
    from lm_eval.tasks import TaskManager

    if task_dir is None:
        return TaskManager()
    return TaskManager(include_path=str(task_dir), include_defaults=False)


def _row(sample: dict, method: str) -> dict:
    """One scored question from one of lm-eval's logged samples."""
    answer = int(sample["doc"]["answer"])
    if method == "loglikelihood":
        loglik = [float(resp[0]) for resp in sample["filtered_resps"]]
        pred = MMLU_LETTERS[int(np.argmax(loglik))]
    else:
        loglik = [np.nan] * len(MMLU_LETTERS)
        reply = sample["filtered_resps"]
        letter = reply[0] if isinstance(reply, list) else reply
        pred = letter if letter in MMLU_LETTERS else None
    return {
        **{f"loglik_{c}": v for c, v in zip(MMLU_LETTERS, loglik)},
        "pred": pred,
        "answer": MMLU_LETTERS[answer],
        "correct": int(pred == MMLU_LETTERS[answer]),
    }


def evaluate_questions(
    lm,
    questions: pd.DataFrame,
    num_fewshot: int,
    task_dir: Path | None,
    manager=None,
    seed: int = 0,
    method: str = "loglikelihood",
):
    """Score ``questions`` with lm-eval in one call: (one row per question, lm-eval's results dict).

    ``task_dir``: the folder of ``write_local_tasks``, or None for lm-eval's standard ``mmlu`` tasks.
    ``method='generative'`` applies the expert's chat template and parses the letter of its reply.
    """
    import lm_eval

    subjects = sorted(questions["subject"].unique())
    kind = "mmlu" if task_dir is None else "local"
    scored_as = protocol(num_fewshot, kind, method)
    if task_dir is not None:
        missing = [
            str(Path(task_dir) / f"{s}.jsonl") for s in subjects if not (Path(task_dir) / f"{s}.jsonl").is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"question file(s) of the local MMLU task missing: {missing[:3]}; "
                "write them with leeroo_lib.experts.scoring.write_local_tasks(load_mmlu(), task_dir, subjects)"
            )
    names = {task_name(s, task_dir, method): s for s in subjects}
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(names),
        num_fewshot=num_fewshot,
        task_manager=manager or task_manager(task_dir),
        samples={t: sorted(questions.loc[questions["subject"] == s, "idx"].tolist()) for t, s in names.items()},
        apply_chat_template=method == "generative",
        log_samples=True,
        bootstrap_iters=0,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        verbosity="ERROR",
    )
    rows = [
        {"subject": names[name], "idx": int(sample["doc_id"]), **_row(sample, method)}
        for name, samples in results["samples"].items()
        for sample in samples
    ]
    scored = pd.DataFrame(rows).sort_values(["subject", "idx"]).reset_index(drop=True)
    return scored.assign(protocol=scored_as), results


def read_scores(path: Path) -> pd.DataFrame:
    """The stored per-question results of one expert (empty when none yet)."""
    path = Path(path)
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame(columns=SCORE_COLUMNS)


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_frame(frame[["subject", "idx"]].astype({"idx": int}))


def _store(frame: pd.DataFrame, path: Path) -> None:
    """Write the whole file or nothing: a reader never sees half a file."""
    partial = path.with_suffix(".partial")
    frame.to_parquet(partial, index=False)
    partial.replace(path)


@contextlib.contextmanager
def library_output_to(log_path: Path):
    """lm-eval, datasets and transformers talk while they score: a warning per task, a progress bar per batch
    of requests, a widget per split, a thousand lines for one expert in a notebook. Inside this block what
    they print goes to ``log_path`` (appended); progress bars made outside it, one per expert, stay where
    they were."""
    import datasets

    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    lm_eval_logger = logging.getLogger("lm_eval")
    kept = (lm_eval_logger.handlers[:], lm_eval_logger.propagate, datasets.is_progress_bar_enabled())
    with (
        open(log_path, "a") as log,
        contextlib.redirect_stderr(log),
        contextlib.redirect_stdout(log),
        no_loading_bar(),
    ):
        lm_eval_logger.handlers, lm_eval_logger.propagate = [logging.StreamHandler(log)], False
        datasets.disable_progress_bars()
        try:
            yield
        finally:
            lm_eval_logger.handlers, lm_eval_logger.propagate = kept[0], kept[1]
            if kept[2]:
                datasets.enable_progress_bars()


def score_expert(
    make_model,
    questions: pd.DataFrame,
    path: Path,
    num_fewshot: int,
    task_dir: Path | None,
    chunk_size: int,
    seed: int = 0,
    desc: str | None = None,
    method: str = "loglikelihood",
) -> pd.DataFrame:
    """Score every question of ``questions`` not yet in ``path``, ``chunk_size`` at a time, appending
    each finished chunk to the parquet file, so a rerun after an interruption skips what is stored.
    Each row keeps ``seconds``, its share of its chunk's wall time. What lm-eval and the libraries under it
    print goes to the file beside it, ``<expert>.log``; one progress bar per expert stays.

    ``make_model``: a zero-argument callable giving the lm-eval model, called only when there is work.
    Returns the stored rows of ``questions``.
    """
    import aiohttp
    import requests

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_scores(path)
    wanted = protocol(num_fewshot, "mmlu" if task_dir is None else "local", method)
    if len(done) and set(done["protocol"]) != {wanted}:
        raise ValueError(
            f"{path} holds scores made with {sorted(set(done['protocol']))}, not '{wanted}'; "
            "delete the file to rescore with the new settings"
        )
    todo = questions[~_keys(questions).isin(_keys(done))].sort_values(["subject", "idx"])
    if len(todo):
        with library_output_to(path.with_suffix(".log")):
            lm, manager = make_model(), task_manager(task_dir)
        with tqdm(total=len(questions), initial=len(questions) - len(todo), desc=desc or path.stem, unit="q") as bar:
            for start in range(0, len(todo), chunk_size):
                began = time.perf_counter()
                try:
                    with library_output_to(path.with_suffix(".log")):
                        scored, _ = evaluate_questions(
                            lm, todo.iloc[start : start + chunk_size], num_fewshot, task_dir, manager, seed, method
                        )
                except (requests.exceptions.RequestException, aiohttp.ClientError) as err:  # lm-eval's HTTP
                    raise ConnectionError(
                        f"expert endpoint {getattr(lm, 'base_url', '?')} failed while scoring ({err}); the "
                        f"{len(done)} questions scored before are kept in {path}: restart the server and rerun, "
                        "scoring resumes there"
                    ) from None
                scored["seconds"] = (time.perf_counter() - began) / len(scored)
                done = scored if done.empty else pd.concat([done, scored], ignore_index=True)
                _store(done, path)  # a chunk is stored whole or not at all
                bar.update(len(scored))
    mine = done[_keys(done).isin(_keys(questions))]
    return mine.sort_values(["subject", "idx"]).reset_index(drop=True)


def live_sample(
    profile: Profile, questions: pd.DataFrame, among: pd.Index | None = None, subjects=None
) -> pd.DataFrame:
    """The questions the profile's live experts are scored on (``scoring.questions_per_subject`` of
    each of ``subjects``, default ``scoring.subjects``), seeded, drawn from ``among``."""
    settings = profile.scoring
    return select_questions(
        questions, settings.questions_per_subject, profile.seed, subjects or settings.subjects, among
    )


def scores_path(profile: Profile, name: str, shard: tuple[int, int] | None = None) -> Path:
    """Where a live expert's rows are stored: one file per expert, and one per shard of a fanned-out run."""
    if shard is None:
        return profile.output_path("data", "scores", f"{safe_name(name)}.parquet")
    return shard_folder(profile, name) / "{}-of-{}.parquet".format(*shard)


def shard_folder(profile: Profile, name: str) -> Path:
    """The folder of one live expert's shard files (created)."""
    folder = profile.output_root / "data" / "scores" / "shards" / safe_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def score_job(
    cfg, questions: pd.DataFrame, entry: LiveExpert, picked: pd.DataFrame, path: Path, model=None
) -> pd.DataFrame:
    """Score one live expert on ``picked`` into ``path``, with a task folder of its own beside the file;
    ``model``: its lm-eval model when already loaded, else loaded when there is work."""
    settings = cfg.scoring
    task_dir = None
    if settings.task == "local":
        task_dir = write_local_tasks(questions, Path(path).with_suffix(".tasks"), picked["subject"].unique())
    return score_expert(
        lambda: model if model is not None else load_expert_model(entry, settings.batch_size, cfg.device),
        picked,
        path,
        settings.num_fewshot,
        task_dir,
        settings.chunk_size,
        cfg.seed,
        desc=entry.name,
        method=entry.method,
    )


def score_live_experts(
    profile: Profile, questions: pd.DataFrame, among: pd.Index | None = None
) -> dict[str, pd.DataFrame]:
    """Score each live expert of the profile's ``scoring`` block on its question sample; each
    expert's rows go to ``<output root>/data/scores/<expert>.parquet`` and resume from there."""
    picked = live_sample(profile, questions, among)
    for entry in profile.scoring.live_experts:  # fail early on a bad setting, before any model loads
        protocol(profile.scoring.num_fewshot, profile.scoring.task, entry.method)
    return {
        entry.name: score_job(profile, questions, entry, picked, scores_path(profile, entry.name))
        for entry in profile.scoring.live_experts
    }


def merge_shards(profile: Profile, name: str) -> pd.DataFrame:
    """Join the shard files of one expert (all ``i-of-n`` for one ``n``) and the rows already in its
    score file into that file; a question scored twice keeps one row. Returns the merged rows."""
    folder = shard_folder(profile, name)
    shards = sorted(folder.glob("*-of-*.parquet"))
    counts = {int(p.stem.split("-of-")[1]) for p in shards}
    if len(counts) != 1:
        raise FileNotFoundError(
            f"{folder} holds no shard files of one run (found {[p.name for p in shards]}); run every "
            f"`leeroo score --profile {profile.name} --expert '{name}' --shard i/n` first"
        )
    n = counts.pop()
    missing = [i for i in range(n) if not scores_path(profile, name, (i, n)).is_file()]
    if missing:
        raise FileNotFoundError(f"shards {missing} of {n} of '{name}' are not stored in {folder}: run them first")
    path = scores_path(profile, name)
    parts = [read_scores(path), *(read_scores(scores_path(profile, name, (i, n))) for i in range(n))]
    merged = pd.concat([p for p in parts if len(p)], ignore_index=True)
    if merged["protocol"].nunique() > 1:
        raise ValueError(
            f"the shards and {path} of '{name}' were scored differently: {sorted(set(merged['protocol']))}"
        )
    merged = merged.drop_duplicates(["subject", "idx"]).sort_values(["subject", "idx"]).reset_index(drop=True)
    _store(merged, path)
    return merged


def run_job(profile: Profile, expert: str, subjects=None, shard: tuple[int, int] | None = None) -> Path:
    """One scoring job (``leeroo score``): a live expert of a profile on its question sample, or on one
    shard of it, into its own resumable file; returns the file."""
    from ..data.benchmarks import load_mmlu
    from ..data.suites import load_recorded_scores

    entry = profile.live_expert(expert)
    questions = load_mmlu()
    picked = shard_of(live_sample(profile, questions, load_recorded_scores().index, subjects), shard)
    path = scores_path(profile, expert, shard)
    scored = score_job(profile, questions, entry, picked, path)
    print(f"{expert}: {len(scored)} questions in {path}, accuracy {scored['correct'].mean():.3f}")
    return path


def merge_score_matrix(recorded: pd.DataFrame, live: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The recorded matrix with one more column per live expert: its 0/1 ``correct`` on the
    questions it was scored on, NaN elsewhere; rows stay those of the recorded matrix."""
    columns = {
        name: scores.set_index(["subject", "idx"])["correct"].astype(np.float64) for name, scores in live.items()
    }
    return recorded.join(pd.DataFrame(columns), how="left")


def letter_baseline(live: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per live expert: accuracy beside chance (0.25), the share of its answers that is each letter, and the
    letter-bias baseline, the accuracy of always answering the letter the expert itself predicts most often,
    on the same questions."""
    rows = []
    for name, scores in live.items():
        favourite = scores["pred"].value_counts().idxmax()
        rows.append(
            {
                "expert": name,
                "n_questions": len(scores),
                "accuracy": scores["correct"].mean(),
                "chance": 1 / len(MMLU_LETTERS),
                "most_frequent_letter": favourite,
                "share_of_predictions": (scores["pred"] == favourite).mean(),
                "letter_bias_baseline": (scores["answer"] == favourite).mean(),
                **{f"share_{letter}": (scores["pred"] == letter).mean() for letter in MMLU_LETTERS},
            }
        )
    return pd.DataFrame(rows)


def letter_distribution(live: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Share of each letter among each live expert's predictions, and among the gold answers (of the
    first expert's questions: the live experts of a profile share one sample)."""
    gold = next(iter(live.values()))["answer"] if live else pd.Series(dtype=str)
    columns = {name: scores["pred"] for name, scores in live.items()} | {"gold answer": gold}
    return pd.DataFrame(
        {
            name: letters.value_counts(normalize=True).reindex(list(MMLU_LETTERS), fill_value=0.0)
            for name, letters in columns.items()
        }
    )
