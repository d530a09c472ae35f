"""Faults of the routing service: a shutdown (SIGTERM, or Ctrl-C's SIGINT) with requests in flight, and an expert
that dies mid-request. Processes are checked by their pids; every process started here is stopped by its pid."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from serving_fakes import (
    CHEAP,
    DEAR,
    MODEL,
    dear_subject,
    fake_expert,
    ledger_consistent,
    ledger_rows,
    pair_orchestrator,
    serving,
    wait_for,
)

from leeroo_lib.experts.live_models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, fp32_folder
from leeroo_lib.experts.server import STOP_TIMEOUT_S, free_port
from leeroo_lib.serving.app import SHUTDOWN_GRACE_S
from leeroo_lib.serving.endpoints import Endpoint

TESTS = Path(__file__).parent
SHUTDOWN_BOUND_S = SHUTDOWN_GRACE_S + STOP_TIMEOUT_S  # what the service promises, from the signal to its exit
SERVE = """
import sys
from pathlib import Path
from leeroo_lib.config import EndpointsFile, load_profile
from leeroo_lib.serving.app import exit_at_once, serve_orchestrator
run = Path(sys.argv[1])
settings = EndpointsFile.model_validate_json((run / "endpoints.json").read_text())
serve_orchestrator(load_profile("smoke"), settings, run / "orchestrator", run / "ledger.sqlite3")
exit_at_once()  # as `leeroo serve` ends
"""


@pytest.fixture(scope="module")
def orchestrator(questions, recorded):
    return pair_orchestrator(questions, recorded)


@contextlib.contextmanager
def process(command: list[str], **kwargs):
    """A child process, stopped by its pid (SIGKILL) on exit if it still runs."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    try:
        yield child
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)


def answers_health(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def in_background(call):
    """Run ``call`` in a thread; the returned dict holds its result (or error) once the thread is joined."""
    out = {}

    def run():
        try:
            out["result"] = call()
        except Exception as error:  # the test reads it
            out["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def chat(url: str, subject: str, **fields) -> dict:
    return {
        "model": MODEL,
        "budget": 0.9,  # the dearer expert, the slow one, whenever the policy prefers it
        "subject": subject,
        "messages": [{"role": "user", "content": "Which organ filters the blood?"}],
        **fields,
    }


def streamed(url: str, body: dict) -> list[str]:
    with httpx.stream("POST", f"{url}/chat/completions", json={**body, "stream": True}, timeout=60) as response:
        return [line for line in response.iter_lines() if line]


@pytest.mark.server
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_shutdown_with_both_experts_busy_cuts_the_requests_in_flight_stops_every_expert_and_is_bounded(
    orchestrator, questions, tmp_path, signum
):
    orchestrator.save(tmp_path / "orchestrator")
    port, local_port, subject = free_port(), free_port(), dear_subject(orchestrator, questions)
    with fake_expert(words=200, delay_s=0.1) as (slow, endpoint):  # 20 s per answer: in flight at the signal
        (tmp_path / "endpoints.json").write_text(
            json.dumps(
                {
                    "service": {"pool": "pair", "budget": 0.6, "window": 4, "port": port},
                    "experts": {
                        CHEAP: {"local": {"expert": "SmolLM2-135M-Instruct (live)", "port": local_port}},
                        DEAR: {"base_url": endpoint.base_url, "model": endpoint.model},
                    },
                }
            )
        )
        with process([sys.executable, "-c", SERVE, str(tmp_path)], cwd=TESTS.parent) as service:
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: answers_health(f"{url}/health") or service.poll() is not None, 180, "the service")
            experts = psutil.Process(service.pid).children(recursive=True)
            assert experts, "the service started no expert server"
            plain, plain_out = in_background(lambda: httpx.post(f"{url}/v1/chat/completions", json=chat(url, subject)))
            stream, stream_out = in_background(lambda: streamed(f"{url}/v1", chat(url, subject)))
            # the local expert busy too: a long answer asked of it directly, which the service cannot cut
            local = f"http://127.0.0.1:{local_port}/v1/completions"
            smollm2 = str(fp32_folder(package=SMOLLM2_PACKAGE, file=SMOLLM2_GGUF))
            busy, busy_out = in_background(
                lambda: httpx.post(local, json={"model": smollm2, "prompt": "Once", "max_tokens": 2000}, timeout=60)
            )
            wait_for(lambda: slow.received == 2, 30, "both requests to reach the slow expert")
            time.sleep(2)  # the local expert generating (2,000 tokens take it far longer)
            assert busy.is_alive(), busy_out
            signalled = time.monotonic()
            os.kill(service.pid, signum)
            rc = service.wait(timeout=SHUTDOWN_BOUND_S + 10)
            took = time.monotonic() - signalled
            log = service.communicate()[0]
        plain.join(10), stream.join(10)
        print(f"{signal.Signals(signum).name}: exited {took:.2f} s after the signal (bound: {SHUTDOWN_BOUND_S} s)")
        assert rc == 0 and took < SHUTDOWN_BOUND_S, log
        assert "Unclosed client session" not in log and "Unclosed connector" not in log, log
        assert "stopped the service and the expert servers it started" in log
        assert [p.pid for p in experts if psutil.pid_exists(p.pid)] == []  # every expert server is gone
        answer = plain_out["result"]
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "shutting_down"
        events = stream_out["result"]
        assert '"code": "shutting_down"' in events[-2] and events[-1] == "data: [DONE]"
        wait_for(lambda: slow.cut == 2, 10, "the expert to see both calls cut")
    (row,) = ledger_rows(tmp_path / "ledger.sqlite3")  # the stream's words so far, counted once
    assert row["outcome"] == "shutdown" and row["expert"] == DEAR and row["completion_tokens"] >= 1
    assert ledger_consistent(tmp_path / "ledger.sqlite3")


@pytest.mark.server
def test_an_expert_that_dies_mid_request_gives_way_and_mid_stream_ends_the_stream_cleanly(orchestrator, questions):
    port, subject = free_port(), dear_subject(orchestrator, questions)
    dying = [sys.executable, str(TESTS / "serving_fakes.py"), str(port), "100", "0.1"]  # 10 s per answer
    mortal = Endpoint(f"http://127.0.0.1:{port}/v1", "fake-model")
    with fake_expert() as (fast, endpoint), serving(orchestrator, {CHEAP: endpoint, DEAR: mortal}) as (routing, url):
        for stream in (False, True):
            with process(dying) as expert:
                wait_for(lambda: answers_health(f"http://127.0.0.1:{port}/health"), 60, "the mortal expert")
                body = chat(url, subject)
                call = (
                    (lambda: streamed(url, body))
                    if stream
                    else (lambda: httpx.post(f"{url}/chat/completions", json=body))
                )
                thread, out = in_background(call)
                wait_for(
                    lambda: any(
                        c.status == "ESTABLISHED" and c.laddr.port == port
                        for c in psutil.Process(expert.pid).net_connections()
                    ),
                    30,
                    "the call to reach the mortal expert",
                )
                time.sleep(0.3)  # a few words written
                killed = time.monotonic()
                os.kill(expert.pid, signal.SIGKILL)
                thread.join(30)
                took = time.monotonic() - killed
            assert took < 5, f"the request hung {took:.1f} s after its expert died"
            if stream:  # the answer had begun: the stream says the expert broke off, and ends
                events = out["result"]
                assert '"code": "broken"' in events[-2] and events[-1] == "data: [DONE]"
            else:  # nothing was written yet: the next affordable expert answers
                answer = out["result"]
                assert answer.status_code == 200 and answer.headers["x-leeroo-expert"] == CHEAP
                assert answer.headers["x-leeroo-fallbacks"] == "1" and DEAR in answer.headers["x-leeroo-failed"]
        rows = ledger_rows(routing.ledger.path)
        assert [r["outcome"] for r in rows] == ["answered", "broken"] and ledger_consistent(routing.ledger.path)
