"""A local expert behind an OpenAI-compatible endpoint: ``transformers serve`` for one model folder.

The routing service, its tests and notebook 07 talk to experts over HTTP only, as they would to
vLLM servers of large models on GPUs; this starts the small CPU stand-in for such a server. The
served model id is the folder's path (``transformers serve`` pins itself to the model it preloads).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

# A local folder needs nothing from the hub; without these the CLI would wait on it (update check, lookups).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"}
LOG_TAIL_CHARS = 3000
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# a server that ignores SIGTERM this long gets SIGKILL (transformers serve waits out an answer in flight)
STOP_TIMEOUT_S = 5
# A local expert shares the host's cores with the routing service and its clients; the service's decisions and
# 429s must not queue behind generation, so the expert runs this much lower in the CPU scheduler's order.
NICENESS = 10


def _before_exec() -> None:
    """In the child before exec: below the routing service in CPU priority (``NICENESS``) and, on Linux, SIGTERM
    when the process that started it dies, even by SIGKILL, so a killed notebook kernel or benchmark leaves no
    server behind."""
    os.nice(NICENESS)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


class ExpertServer:
    """``transformers serve`` on ``host:port`` for ``model_dir``, started and stopped as a context manager.

    ``start()`` returns once ``/health`` answers (the model is preloaded before the server listens);
    ``stop()`` ends the server's whole process group by its pid and waits for it, so nothing is left
    running; it also runs at interpreter exit, and on Linux the server dies with the thread that
    started it. A server that dies or never answers raises ``RuntimeError`` with the tail of its log.
    ``threads``: its torch threads (None: torch's default, one per core); servers sharing a few cores each take
    their share, as threads beyond the cores stall one another.
    """

    def __init__(
        self,
        model_dir,
        port: int | None = None,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 180.0,
        threads: int | None = None,
    ):
        self.model_dir = Path(model_dir).resolve()
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.model_dir} is not a model folder (no config.json): pass a folder written by "
                "save_pretrained, e.g. leeroo_lib.experts.live_models.fp32_folder(...)"
            )
        self.host = host
        self.port = port
        self.ready_timeout_s = ready_timeout_s
        self.threads = threads
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._signalled_at: float | None = None  # when terminate() sent SIGTERM (time.monotonic)

    @property
    def model_id(self) -> str:
        """The model name requests must carry."""
        return str(self.model_dir)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def start(self) -> ExpertServer:
        if self.process is not None:
            raise RuntimeError(f"the expert server for {self.model_dir} is already running (pid {self.pid})")
        self.port = self.port or free_port(self.host)
        log = tempfile.NamedTemporaryFile("wb", prefix=f"expert-{self.port}-", suffix=".log", delete=False)
        self.log_path = Path(log.name)
        command = [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            self.model_id,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ]
        with log:
            # A session of its own: stop() signals the whole group, children included.
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **OFFLINE_ENV, **({"OMP_NUM_THREADS": str(self.threads)} if self.threads else {})},
                start_new_session=True,
                preexec_fn=_before_exec,
            )
        atexit.register(self.stop)  # an interpreter that exits without stop() (a notebook kernel) still ends it
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"transformers serve for {self.model_dir} exited with code {self.process.returncode} before it "
                    f"answered (port {self.port} taken, or the model failed to load?); its log ends with:\n"
                    f"{self.log_tail()}"
                )
            try:
                if httpx.get(f"http://{self.host}:{self.port}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"transformers serve for {self.model_dir} did not answer on {self.base_url} within "
            f"{self.ready_timeout_s:g} s (raise ready_timeout_s on a busy machine); its log ends with:\n"
            f"{self.log_tail()}"
        )

    def terminate(self) -> None:
        """SIGTERM to the server's process group, without waiting: ``stop`` waits. Several servers told
        first stop in the time of the slowest, not the sum."""
        if self.process is not None:
            self._signalled_at = self._signalled_at or time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL ``STOP_TIMEOUT_S`` after the first SIGTERM (that of
        ``terminate`` if it came first: servers told together are all killed by then); waits so no zombie is
        left, then deletes the log."""
        if self.process is None:
            return
        try:
            self.terminate()
            try:
                self.process.wait(timeout=max(0.0, self._signalled_at + STOP_TIMEOUT_S - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        except ProcessLookupError:
            self.process.wait()
        # The group outlives its leader when a child is still there: end it too.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process, self._signalled_at = None, None
        self.log_path.unlink(missing_ok=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> ExpertServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
