"""ExpertServer: a real `transformers serve` of the live SmolLM2 folder, one per module."""

import json
import os

import httpx
import psutil
import pytest

from leeroo_lib.experts.live_models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, fp32_folder
from leeroo_lib.experts.server import NICENESS, ExpertServer, free_port


def gone(pid: int) -> bool:
    """Whether the process, and every process of its group, has ended (and been reaped)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return not psutil.pid_exists(pid)
    return False


def serving_on(port: int) -> bool:
    """Whether any process runs a server with this port on its command line."""
    return any(str(port) in (p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))


@pytest.fixture(scope="module")
def smollm2():
    return fp32_folder(package=SMOLLM2_PACKAGE, file=SMOLLM2_GGUF)


@pytest.mark.server
def test_serves_chat_on_the_given_port_below_its_starter_with_its_threads_then_stops_its_whole_group(smollm2):
    port = free_port()
    with ExpertServer(smollm2, port=port, threads=1) as server:
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        process = psutil.Process(server.pid)
        assert process.nice() == min(19, os.nice(0) + NICENESS)
        assert process.environ()["OMP_NUM_THREADS"] == "1"
        listed = httpx.get(f"{server.base_url}/models").json()["data"]
        assert server.model_id in [m["id"] for m in listed]
        answer = httpx.post(
            f"{server.base_url}/chat/completions",
            timeout=120,
            json={
                "model": server.model_id,
                "messages": [{"role": "user", "content": "Say yes."}],
                "max_tokens": 2,
            },
        ).json()
        assert answer["usage"]["completion_tokens"] >= 1
        pid, log = server.pid, server.log_path
        assert psutil.pid_exists(pid)
    assert gone(pid)
    assert not log.exists()


def test_a_folder_that_is_no_model_is_refused_before_starting(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        ExpertServer(tmp_path)


@pytest.mark.server
def test_a_server_that_dies_says_why_and_leaves_nothing(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))  # no weights, no tokenizer
    port = free_port()
    server = ExpertServer(tmp_path, port=port)
    with pytest.raises(RuntimeError, match=r"exited with code .* its log ends with:\n(.|\n)*Error"):
        server.start()
    assert server.process is None
    assert not serving_on(port)


@pytest.mark.server
def test_a_server_not_ready_in_time_is_stopped_and_says_so(smollm2):
    port = free_port()
    server = ExpertServer(smollm2, port=port, ready_timeout_s=0.5)
    with pytest.raises(RuntimeError, match="did not answer .* within 0.5 s .* its log ends with"):
        server.start()
    assert server.process is None
    assert not serving_on(port)
