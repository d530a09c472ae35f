"""An expert behind a real OpenAI-compatible server: `transformers serve` of SmolLM2 on 127.0.0.1,
scored through lm-eval's chat-completions model and compared with the same model in-process."""

import os

import pytest

from leeroo_lib.experts import scoring
from leeroo_lib.experts.live_models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, fp32_folder
from leeroo_lib.experts.scoring import (
    evaluate_questions,
    load_expert_model,
    read_scores,
    score_expert,
    select_questions,
    write_local_tasks,
)
from leeroo_lib.experts.server import ExpertServer

pytestmark = pytest.mark.server
SUBJECTS = ["abstract_algebra", "anatomy"]


@pytest.fixture(scope="module")
def server():
    with ExpertServer(fp32_folder(SMOLLM2_PACKAGE, SMOLLM2_GGUF)) as running:
        pid = running.pid
        yield running
    try:  # stopped by its pid, group and all: the process is gone
        os.kill(pid, 0)
        raise AssertionError(f"the expert server (pid {pid}) still runs after its stop")
    except ProcessLookupError:
        pass


@pytest.fixture
def chat_entry(live_expert):
    def entry(server, **fields):
        return live_expert(
            name="SmolLM2 (served)",
            backend="local-chat-completions",
            model_args={"base_url": f"{server.base_url}/chat/completions", "model": server.model_id},
            **fields,
        )

    return entry


@pytest.fixture(scope="module")
def picked(questions):
    return select_questions(questions, 2, seed=0, subjects=SUBJECTS)


@pytest.fixture(scope="module")
def task_dir(questions, tmp_path_factory):
    return write_local_tasks(questions, tmp_path_factory.mktemp("tasks"), SUBJECTS)


def test_served_letters_equal_the_in_process_letters(
    server, chat_entry, live_expert, picked, task_dir, tmp_path, capsys
):
    served = score_expert(
        lambda: load_expert_model(chat_entry(server)),
        picked,
        tmp_path / "served.parquet",
        0,
        task_dir,
        chunk_size=4,
        method=chat_entry(server).method,
    )
    local = live_expert(backend="hf", method="generative", gguf={"package": SMOLLM2_PACKAGE, "file": SMOLLM2_GGUF})
    in_process, _ = evaluate_questions(load_expert_model(local, batch_size=1), picked, 0, task_dir, method="generative")
    assert set(served["protocol"]) == {
        "lm-eval 0-shot generative, letter parsed (local task, shots: first test questions of the subject)"
    }
    assert served["loglik_A"].isna().all() and served["pred"].notna().all()
    differ = served[served["pred"].to_numpy() != in_process["pred"].to_numpy()]
    with capsys.disabled():
        print(
            f"\nserved vs in-process greedy letters: {len(served) - len(differ)} of {len(served)} equal"
            + (f"; differ on {list(zip(differ['subject'], differ['idx']))}" if len(differ) else "")
        )
    assert differ.empty


def test_loglikelihood_needs_a_server_that_returns_prompt_logprobs(server, chat_entry, live_expert):
    entry = live_expert(
        name="SmolLM2 (completions)",
        backend="local-completions",
        model_args={
            "base_url": f"{server.base_url}/completions",
            "model": server.model_id,
            "tokenizer": server.model_id,
        },
    )
    with pytest.raises(ValueError, match="returns no prompt logprobs.*vLLM.*local-chat-completions"):
        load_expert_model(entry)
    with pytest.raises(ValueError, match="chat endpoints return no loglikelihoods"):
        chat_entry(server, method="loglikelihood")


@pytest.mark.slow
def test_a_dying_endpoint_is_one_clear_error_and_keeps_what_was_stored(
    chat_entry, picked, task_dir, tmp_path, monkeypatch
):
    path = tmp_path / "dying.parquet"
    real = scoring.evaluate_questions
    with ExpertServer(fp32_folder(SMOLLM2_PACKAGE, SMOLLM2_GGUF)) as dying:

        def stop_after_first_chunk(lm, chunk, *args, **kwargs):
            if path.is_file():
                dying.stop()
            return real(lm, chunk, *args, **kwargs)

        monkeypatch.setattr(scoring, "evaluate_questions", stop_after_first_chunk)
        with pytest.raises(
            ConnectionError,
            match=r"failed while scoring .* the 2 questions scored before are "
            r"kept in .*dying\.parquet.*resumes",
        ):
            score_expert(
                lambda: load_expert_model(chat_entry(dying)),
                picked,
                path,
                0,
                task_dir,
                chunk_size=2,
                method="generative",
            )
    assert len(read_scores(path)) == 2
