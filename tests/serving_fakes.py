"""What the routing service's tests share (no tests here): a pair of recorded experts with a subject policy
fitted on their MMLU results, a tiny fake OpenAI-compatible expert, and the service over them on a free
port of 127.0.0.1 with its ledger in a temporary folder.

Run as a script (``python tests/serving_fakes.py PORT WORDS DELAY_S``), the fake expert is a process of
its own, for the tests that kill an expert by its pid.
"""

import asyncio
import contextlib
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from leeroo_lib.config import ServiceSettings
from leeroo_lib.experts.catalog import expert_costs, get_experts
from leeroo_lib.experts.server import free_port
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.routing.policies.baselines import SubjectPolicy
from leeroo_lib.serving.app import create_app, running
from leeroo_lib.serving.endpoints import Endpoint
from leeroo_lib.serving.keys import ClientKeys
from leeroo_lib.serving.service import RoutingService

CHEAP, DEAR = "mistralai/Mistral-7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"  # 0.2 and 0.6 USD per 1M tokens
POOL = "pair"
MODEL = f"leeroo-{POOL}"
KEY = "sk-test-0123456789abcdef"


def pair_orchestrator(questions, recorded) -> Orchestrator:
    """A subject policy over two recorded experts: at a budget of 0.9 it prefers the dearer on most subjects."""
    scores = recorded[[CHEAP, DEAR]].dropna()
    keys = questions.set_index(["subject", "idx"]).index
    policy = SubjectPolicy().fit(questions[keys.isin(scores.index)], scores)
    return Orchestrator(policy, expert_costs(get_experts([CHEAP, DEAR])), pools={POOL: [CHEAP, DEAR]})


def dear_subject(orchestrator, questions) -> str:
    """A subject on which the policy prefers the dearer expert (it answers whenever the budget affords it)."""
    subjects = questions.drop_duplicates("subject")
    proba = orchestrator.policy.predict_proba(subjects)
    return subjects["subject"][(proba[DEAR] > proba[CHEAP]).to_numpy()].iloc[0]


class FakeExpert:
    """A tiny OpenAI-compatible chat expert: answers ``words`` words, ``delay_s`` apart (streamed or not),
    reports usage, and keeps what it was asked (``received``, the ``last`` body), the usage of each answer
    it finished (``usage``) and how many its client cut off before the end (``cut``)."""

    def __init__(self, words: int = 3, delay_s: float = 0.0):
        self.words, self.delay_s = words, delay_s
        self.received, self.cut, self.usage, self.last = 0, 0, [], None
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.chat)
        self.app.get("/health")(lambda: {"status": "ok"})

    def _chunk(self, model: str, **fields) -> str:
        """One server-sent event of a streamed answer."""
        chunk = {"id": "fake", "object": "chat.completion.chunk", "created": 0, "model": model, **fields}
        return f"data: {json.dumps(chunk)}\n\n"

    async def chat(self, request: Request):
        body = await request.json()
        self.received, self.last = self.received + 1, body
        prompt, model = len(json.dumps(body["messages"])) // 4 + 1, body["model"]
        usage = {"prompt_tokens": prompt, "completion_tokens": self.words, "total_tokens": prompt + self.words}
        if body.get("stream"):
            return StreamingResponse(self._stream(model, usage, body), media_type="text/event-stream")
        for _ in range(self.words):
            await asyncio.sleep(self.delay_s)
            if await request.is_disconnected():
                self.cut += 1
                return {}
        self.usage.append((prompt, self.words))
        return {
            "id": "fake",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "A " * self.words}, "finish_reason": "stop"}
            ],
            "usage": usage,
        }

    async def _stream(self, model: str, usage: dict, body: dict):
        finished = False
        try:
            for _ in range(self.words):
                await asyncio.sleep(self.delay_s)
                yield self._chunk(model, choices=[{"index": 0, "delta": {"content": "A "}, "finish_reason": None}])
            yield self._chunk(model, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
            finished = True
            if (body.get("stream_options") or {}).get("include_usage"):
                self.usage.append((usage["prompt_tokens"], usage["completion_tokens"]))
                yield self._chunk(model, choices=[], usage=usage)
            yield "data: [DONE]\n\n"
        finally:
            self.cut += not finished


@contextlib.contextmanager
def fake_expert(words: int = 3, delay_s: float = 0.0):
    """A ``FakeExpert`` on a free port; yields it and its endpoint."""
    fake = FakeExpert(words, delay_s)
    with running(fake.app) as base_url:
        yield fake, Endpoint(base_url, "fake-model")


def dead() -> Endpoint:
    return Endpoint(f"http://127.0.0.1:{free_port()}/v1", "nothing-listens-here")


def service_settings(budget: float = 0.6, window: int = 4, **service) -> ServiceSettings:
    return ServiceSettings(pool=POOL, budget=budget, window=window, timeout_s=60, **service)


@contextlib.contextmanager
def serving(orchestrator, endpoints, ledger: Path | None = None, keys=(), **service):
    """The routing service over ``endpoints`` on a free port (its ledger in a temporary folder unless
    given); yields the service and its base URL."""
    with contextlib.ExitStack() as stack:
        if ledger is None:
            ledger = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "ledger.sqlite3"
        routing = RoutingService(orchestrator, endpoints, service_settings(**service), ledger)
        yield routing, stack.enter_context(running(create_app(routing, ClientKeys(keys))))


def ledger_rows(path: Path) -> list[sqlite3.Row]:
    """The ledger's rows, one per request, read with a connection of the test's own."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM requests ORDER BY at").fetchall()


def ledger_consistent(path: Path) -> bool:
    """Whether each day's totals are the sums of its requests, and each cost is tokens x price."""
    by = "day, key, expert"
    with contextlib.closing(sqlite3.connect(path)) as db:
        summed = db.execute(
            f"SELECT {by}, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_units), SUM(price_units) "
            f"FROM requests GROUP BY {by} ORDER BY {by}"
        ).fetchall()
        daily = db.execute(f"SELECT * FROM daily ORDER BY {by}").fetchall()
        costs = db.execute(
            "SELECT COUNT(*) FROM requests WHERE cost_units != (prompt_tokens + completion_tokens) * price_units"
        ).fetchone()[0]
    return summed == daily and costs == 0


def wait_for(condition, timeout_s: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout_s} s")
        time.sleep(0.02)


if __name__ == "__main__":  # a fake expert as a process of its own: PORT WORDS DELAY_S
    import uvicorn

    port, words, delay_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    uvicorn.run(FakeExpert(words, delay_s).app, host="127.0.0.1", port=port, log_level="warning")
