"""The orchestrator answers: an OpenAI-compatible service that routes each chat request to one expert.

Figure 1 of the paper as a server. For each ``POST /v1/chat/completions`` the saved orchestrator's
policy reads the question (the last user message), the online budget picks the most likely expert it
affords, and the request goes to that expert's own OpenAI-compatible endpoint (``transformers serve``
here, vLLM or a hosted API elsewhere). The answer comes back as the expert wrote it, with the expert's
name in ``model`` and the decision in ``x-leeroo-*`` headers; ``GET /v1/leeroo/stats`` reports the
budget and the real spend counted from each answer's ``usage`` tokens.

Why LiteLLM's Router forwards the calls: it is a well-kept gateway that speaks to any
OpenAI-compatible server (chat or text completions), with timeouts, retries and a uniform response and
error model, so nothing here formats HTTP by hand. The routing decision stays in this module rather than
in a LiteLLM ``CustomRoutingStrategyBase``: a strategy picks one deployment of one model group and
returns no ranking, while here the decision needs the budget window, goes into the response headers,
and a failed expert must give way to the *next best affordable* one, re-decided against the window as it
is then. So each expert is its own LiteLLM model group, and the fallback loop walks the policy's ranking.

Budget online (Eq. 1 has a batch; a service has a stream): the paper's sequential rule applied to each
request as the last query of a rolling window of the ``window`` most recent requests (served or in
flight) that carry the same budget: the request may take an expert only while the mean price of that
window, itself included, stays within the budget. A request may carry its own ``budget``
(``extra_body={"budget": 0.6}``); without one it has the service's.

Free text has no four choices: a message written as ``policy.question_texts`` writes a question (stem,
then lines ``A. ...`` to ``D. ...``) is read as one; any other text is the stem with no choices. The
subject is unknown unless the request names it (``extra_body={"subject": "anatomy"}``); the subject
baseline then falls back to each expert's overall accuracy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .config import CONFIG_DIR, load_profile
from .data import question_key
from .expert_server import ExpertServer
from .orchestrator import MICRO, Orchestrator, allocate_sequential, budget_units, price_units
from .policies.baselines import OraclePolicy

ENDPOINTS_DIR = CONFIG_DIR / "endpoints"
APIS = ("chat", "completions")
LOCAL_API_KEY = "none"  # a local server checks no key; the OpenAI wire format still sends one
QUESTION_PATTERN = re.compile(
    r"(?s)\A(?P<stem>.*)\nA\. (?P<a>[^\n]*)\nB\. (?P<b>[^\n]*)\nC\. (?P<c>[^\n]*)"
    r"\nD\. (?P<d>[^\n]*)\s*\Z"
)


class RoutingError(ValueError):
    """A request the service cannot route (answered with HTTP 400 and this message)."""


class ExpertsUnavailable(RuntimeError):
    """No affordable expert answered (HTTP 503); the message names each and why."""


# ----------------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Endpoint:
    """Where one expert answers: an OpenAI-compatible server, the model id it serves, the environment
    variable holding its API key (None: a local server without one) and the endpoint it speaks:
    ``chat`` (/v1/chat/completions) or ``completions`` (/v1/completions: a base model without a chat
    template; the service turns the chat into a prompt)."""

    base_url: str
    model: str
    api: str = "chat"
    api_key_env: str | None = None
    server: ExpertServer | None = field(default=None, compare=False, repr=False)  # the local process behind it

    def api_key(self) -> str:
        if self.api_key_env is None:
            return LOCAL_API_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RuntimeError(
                f"the API key of {self.base_url} is read from ${self.api_key_env}, which is not set: "
                f"export {self.api_key_env}=... before starting the service"
            )
        return key


@dataclass(frozen=True)
class LocalExpert:
    """An expert this machine runs itself: ``transformers serve`` of the model folder of the profile's
    live expert ``expert``, on ``port`` (None: a free port)."""

    expert: str
    api: str = "chat"
    port: int | None = None


@dataclass(frozen=True)
class ServiceConfig:
    """configs/endpoints/<profile>.yaml: which pool the service routes over, its default budget (mean USD
    per 1M tokens), the rolling window the budget holds over, where it listens, how long an expert may
    take and how often a failed call is retried before the next expert; one endpoint per expert, and
    optionally a ``stand_in`` that answers for every served expert without one (said wherever it is used)."""

    pool: str
    budget: float
    window: int
    endpoints: dict[str, Endpoint | LocalExpert]
    stand_in: Endpoint | LocalExpert | None = None
    host: str = "127.0.0.1"
    port: int = 8100
    timeout_s: float = 120.0
    retries: int = 0
    path: Path | None = None

    def stand_ins(self, experts) -> list[str]:
        """The experts of ``experts`` that only the stand-in answers for."""
        return [e for e in experts if e not in self.endpoints] if self.stand_in is not None else []

    def endpoints_for(self, experts) -> dict[str, Endpoint | LocalExpert]:
        """The endpoint of each expert (the stand-in's where it has none of its own)."""
        missing = [e for e in experts if e not in self.endpoints and self.stand_in is None]
        if missing:
            raise ValueError(
                f"{self.path}: no endpoint for {missing}, which pool '{self.pool}' serves: add an entry "
                "per expert under experts (base_url, model, api) or a local one"
            )
        return {e: self.endpoints.get(e, self.stand_in) for e in experts}


def _reject_unknown(keys, known, where: str) -> None:
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; the known keys are {sorted(known)}")


def _endpoint_entry(entry: dict, where: str) -> Endpoint | LocalExpert:
    _reject_unknown(entry, {"base_url", "model", "api", "api_key_env", "local"}, where)
    api = entry.get("api", "chat")
    if api not in APIS:
        raise ValueError(f"{where}: api '{api}' is neither of {APIS}")
    if "local" in entry:
        _reject_unknown(entry["local"], {"expert", "port"}, f"{where}, local")
        if "expert" not in entry["local"]:
            raise ValueError(f"{where}, local: name the live expert of the profile to serve (expert: ...)")
        return LocalExpert(expert=entry["local"]["expert"], api=api, port=entry["local"].get("port"))
    if "base_url" in entry and "model" in entry:
        return Endpoint(base_url=entry["base_url"], model=entry["model"], api=api, api_key_env=entry.get("api_key_env"))
    raise ValueError(
        f"{where}: give base_url and model (a running server), or local (a live expert of the profile "
        "that this machine serves with transformers serve)"
    )


def read_service_config(path: Path) -> ServiceConfig:
    """Read and check an endpoints file (see configs/endpoints/cpu.yaml for the commented format)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no endpoints file {path}: write one like configs/endpoints/cpu.yaml (one entry per "
            "expert of the pool: base_url, model, api_key_env, api; or local)"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    _reject_unknown(raw, {"service", "experts", "stand_in"}, str(path))
    service = raw.get("service", {})
    _reject_unknown(
        service, {f.name for f in fields(ServiceConfig)} - {"endpoints", "stand_in", "path"}, f"{path}, service"
    )
    for key in ("pool", "budget", "window"):
        if key not in service:
            raise ValueError(f"{path}, service: '{key}' is missing")
    endpoints = {
        expert: _endpoint_entry(entry, f"{path}, expert '{expert}'")
        for expert, entry in (raw.get("experts") or {}).items()
    }
    stand_in = _endpoint_entry(raw["stand_in"], f"{path}, stand_in") if "stand_in" in raw else None
    return ServiceConfig(endpoints=endpoints, stand_in=stand_in, path=path, **service)


def service_config(profile_name: str) -> ServiceConfig:
    return read_service_config(ENDPOINTS_DIR / f"{profile_name}.yaml")


@contextlib.contextmanager
def local_experts(cfg, endpoints: dict[str, Endpoint | LocalExpert], free_ports: bool = False):
    """Start ``transformers serve`` for every local expert (one server per model, however many
    entries name it) and yield every entry as a plain ``Endpoint``; the servers stop on exit.
    ``free_ports`` ignores the configured ports (a notebook or benchmark beside ``make serve``)."""
    from .live_models import fp32_folder

    live = {entry["name"]: entry for entry in cfg["scoring"]["live_experts"]}
    wanted = {}
    for expert, entry in endpoints.items():
        if isinstance(entry, LocalExpert):
            if entry.expert not in live:
                raise ValueError(
                    f"endpoint of '{expert}': local expert '{entry.expert}' is not a live expert of profile "
                    f"'{cfg.name}' (scoring.live_experts: {sorted(live)})"
                )
            if wanted.get(entry.expert, entry.port) != entry.port:
                raise ValueError(
                    f"local expert '{entry.expert}' is given two ports, {wanted[entry.expert]} and {entry.port}"
                )
            wanted[entry.expert] = entry.port
    with contextlib.ExitStack() as stack:
        servers = {}
        for name, port in wanted.items():
            if "gguf" not in live[name]:
                raise ValueError(
                    f"live expert '{name}' has no 'gguf' entry to serve locally; give its endpoint a base_url"
                )
            servers[name] = stack.enter_context(
                ExpertServer(fp32_folder(**live[name]["gguf"]), port=None if free_ports else port)
            )
        yield {
            expert: Endpoint(servers[e.expert].base_url, servers[e.expert].model_id, e.api, server=servers[e.expert])
            if isinstance(e, LocalExpert)
            else e
            for expert, e in endpoints.items()
        }


# ------------------------------------------------------------------------------------ reading a request


def _text(content) -> str:
    """A message's text: a string, or the text parts of an OpenAI content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    raise RoutingError(f"message content must be a string or a list of text parts, not {type(content).__name__}")


def chat_question(messages: list[dict], subject: str | None = None) -> pd.DataFrame:
    """The one-row questions frame the policy reads, from the last user message of a chat."""
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise RoutingError("the request has no user message: the orchestrator reads the last user message")
    text = _text(users[-1].get("content"))
    if not text.strip():
        raise RoutingError("the last user message is empty: there is no question to route")
    match = QUESTION_PATTERN.match(text)
    stem, choices = (match["stem"], [match[c] for c in "abcd"]) if match else (text, [])
    return pd.DataFrame(
        {
            "subject": [subject or ""],
            "idx": [-1],
            "question": [stem],
            "choices": [choices],
            "qkey": [question_key(stem, choices)],
        }
    )


def chat_prompt(messages: list[dict]) -> str:
    """A chat as one prompt for a completions-only (base) model: the turns in order, each but the
    user's labelled with its role, then an open ``Answer:``."""
    turns = [
        (
            _text(m.get("content"))
            if m.get("role") == "user"
            else f"{m.get('role', 'user').capitalize()}: {_text(m.get('content'))}"
        )
        for m in messages
    ]
    return "\n\n".join(turns) + "\nAnswer:"


# ---------------------------------------------------------------------------------------- online budget


@dataclass(frozen=True)
class Ticket:
    """One request's place in its budget's window: the expert it was given and that expert's price."""

    id: int
    expert: str
    units: int
    budget_units: int


class RollingBudget:
    """Eq. 1 online. Requests that carry the same budget share a window of their ``window`` most recent
    (served or in flight); each new request is the last query of its window and takes, by the paper's
    sequential rule, the most likely expert that keeps the window's mean price within the budget.
    Prices are counted in whole micro-dollars, as in ``orchestrator.allocate``.

    So at every decision the mean price of the window, the new request included, is at most its budget,
    and a request with a budget of its own neither spends nor saves for the others. A failed call gives
    its place back (``release``); the window's spend then drops by at least that price, so the fallback
    always affords an expert as cheap as the one that failed. Windows of the ``MAX_WINDOWS`` budgets used
    longest ago are forgotten.
    """

    MAX_WINDOWS = 1024

    def __init__(self, costs: pd.Series, window: int):
        if window < 1:
            raise ValueError(f"window {window}: the budget needs a window of at least one request")
        order = costs.sort_values(kind="stable")  # cheaper first: argmax breaks ties towards the cheaper
        self.experts = list(order.index)
        self.units = price_units(order)
        self.window = window
        self._windows: OrderedDict[int, OrderedDict[int, int]] = OrderedDict()  # budget -> ticket id -> units
        self._ids = 0
        self._lock = threading.Lock()

    def _held(self, budget_units: int) -> OrderedDict[int, int]:
        held = self._windows.setdefault(budget_units, OrderedDict())
        self._windows.move_to_end(budget_units)
        while len(self._windows) > self.MAX_WINDOWS:
            self._windows.popitem(last=False)
        return held

    def _allowance(self, budget_units: int) -> int:
        """The most the next request of this budget may cost (micro-USD per 1M tokens)."""
        recent = list(self._held(budget_units).values())[-(self.window - 1) :] if self.window > 1 else []
        return budget_units * (len(recent) + 1) - sum(recent)

    def take(self, proba: pd.Series, budget: float, exclude=()) -> Ticket | None:
        """The most likely affordable expert not in ``exclude`` (None if none is left), now held in the window."""
        units = budget_units(budget)
        with self._lock:
            open_ = np.array([e not in exclude for e in self.experts])
            total = self._allowance(units)
            if not (open_ & (self.units <= total)).any():
                return None
            p = proba[self.experts].to_numpy(np.float64)[open_]
            choice = np.flatnonzero(open_)[allocate_sequential(p[None, :], self.units[open_], total)[0]]
            self._ids += 1
            ticket = Ticket(self._ids, self.experts[choice], int(self.units[choice]), units)
            held = self._held(units)
            held[ticket.id] = ticket.units
            while len(held) > self.window:
                held.popitem(last=False)
            return ticket

    def release(self, ticket: Ticket) -> None:
        with self._lock:
            self._windows.get(ticket.budget_units, {}).pop(ticket.id, None)

    def affordable(self, budget: float) -> list[str]:
        with self._lock:
            total = self._allowance(budget_units(budget))
        return [e for e, u in zip(self.experts, self.units) if u <= total]

    def window_mean(self, budget: float) -> float:
        """Mean price (USD per 1M tokens) of the requests now in this budget's window."""
        with self._lock:
            held = self._held(budget_units(budget))
            return sum(held.values()) / MICRO / len(held) if held else 0.0


# --------------------------------------------------------------------------------------------- service


@dataclass
class Stats:
    """What the service has done since it started; real spend is usage tokens x the expert's price."""

    requests: int = 0
    answered: Counter = field(default_factory=Counter)
    fallbacks: int = 0
    unavailable: int = 0
    rejected: int = 0
    broken_streams: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    spend_usd: float = 0.0
    price_sum: float = 0.0

    def as_dict(self) -> dict:
        served = sum(self.answered.values())
        return {
            "requests": self.requests,
            "answered": served,
            "by_expert": dict(self.answered),
            "fallbacks": self.fallbacks,
            "unavailable": self.unavailable,
            "rejected": self.rejected,
            "broken_streams": self.broken_streams,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "spend_usd": self.spend_usd,
            "mean_price_per_1m_usd": self.price_sum / served if served else None,
        }


@dataclass
class Routed:
    """One answered request: the expert's response (or stream) and the decision behind it."""

    expert: str
    first_choice: str
    proba: float
    price: float
    budget: float
    failed: dict[str, str]
    routing_ms: float
    expert_ms: float
    response: object

    def headers(self, window_mean: float) -> dict[str, str]:
        values = {
            "expert": self.expert,
            "first-choice": self.first_choice,
            "success-proba": f"{self.proba:.4f}",
            "price-per-1m-usd": f"{self.price:g}",
            "budget": f"{self.budget:g}",
            "window-mean-price": f"{window_mean:.6g}",
            "fallbacks": str(len(self.failed)),
            "failed": "; ".join(f"{e}: {why}" for e, why in self.failed.items()),
            "routing-ms": f"{self.routing_ms:.2f}",
            "expert-ms": f"{self.expert_ms:.2f}",
        }
        return {f"x-leeroo-{name}": _header_value(value) for name, value in values.items()}


def _reason(error: Exception) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:200].strip()


def _header_value(text: str, limit: int = 500) -> str:
    """``text`` as an HTTP header value: printable ASCII on one line, no edge spaces (h11 refuses them)."""
    return "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))[:limit].strip()


class RoutingService:
    """The orchestrator over one pool's served experts, each reached at its endpoint through LiteLLM."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        pool: str,
        endpoints: dict[str, Endpoint],
        budget: float,
        window: int,
        timeout_s: float = 120.0,
        retries: int = 0,
    ):
        if pool not in orchestrator.pools:
            raise ValueError(
                f"unknown pool '{pool}': the orchestrator serves the pools {sorted(orchestrator.pools)}; "
                "set service.pool in the endpoints file"
            )
        self.experts = list(orchestrator.pools[pool])
        missing = [e for e in self.experts if e not in endpoints]
        if missing:
            raise ValueError(
                f"pool '{pool}' serves {missing} but the endpoints give no endpoint for them: add an "
                f"entry per expert to configs/endpoints/<profile>.yaml"
            )
        if isinstance(orchestrator.policy, OraclePolicy):
            raise ValueError("the oracle reads recorded outcomes, not a question: it cannot route new requests")
        self.orchestrator = orchestrator
        self.pool = pool
        self.model_id = f"leeroo-{pool}"
        self.endpoints = {e: endpoints[e] for e in self.experts}
        self.costs = orchestrator.costs[self.experts]
        self.budget = self.check_budget(budget)
        self.rolling = RollingBudget(self.costs, window)
        self.stats = Stats()
        self._policy_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.router = self._litellm_router(timeout_s, retries)

    def _litellm_router(self, timeout_s: float, retries: int):
        """LiteLLM's Router with one model group per expert (offline it must use its bundled price map
        rather than fetch one, hence the environment variable before the import)."""
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        return litellm.Router(
            num_retries=retries,
            timeout=timeout_s,
            model_list=[
                {
                    "model_name": expert,
                    "litellm_params": {
                        "model": ("openai/" if ep.api == "chat" else "text-completion-openai/") + ep.model,
                        "api_base": ep.base_url,
                        "api_key": ep.api_key(),
                        "timeout": timeout_s,
                        "max_retries": 0,
                    },  # retries are the Router's (num_retries), not the SDK's
                }
                for expert, ep in self.endpoints.items()
            ],
        )

    def check_budget(self, budget) -> float:
        """A request's budget, or the service's; 400 for one that is not a number at least the cheapest price."""
        if budget is None:
            return self.budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(budget):
            raise RoutingError(f"budget {budget!r} is not a finite number: give the mean USD per 1M tokens, e.g. 0.6")
        cheapest = self.costs.idxmin()
        if budget < self.costs[cheapest]:
            raise RoutingError(
                f"budget {budget} USD per 1M tokens is below the cheapest expert of pool '{self.pool}', "
                f"{cheapest} at {self.costs[cheapest]:g}: raise the budget"
            )
        return float(budget)

    def read(self, messages: list[dict], subject: str | None) -> pd.Series:
        """The policy's chance of success per expert of the pool (blocking: run it off the event loop)."""
        return self.orchestrator.policy.predict_proba(chat_question(messages, subject)).iloc[0][self.experts]

    def _messages_for(self, expert: str, messages: list[dict]) -> list[dict]:
        if self.endpoints[expert].api == "completions":
            return [{"role": "user", "content": chat_prompt(messages)}]
        return messages

    async def route(
        self, messages: list[dict], params: dict, budget=None, subject: str | None = None, stream: bool = False
    ) -> Routed:
        """Decide, then call the chosen expert; on its failure the next best affordable one."""
        budget = self.check_budget(budget)
        start = time.perf_counter()
        proba = await asyncio.get_running_loop().run_in_executor(self._policy_thread, self.read, messages, subject)
        routing_ms = (time.perf_counter() - start) * 1000
        failed, first = {}, None
        while (ticket := self.rolling.take(proba, budget, exclude=failed)) is not None:
            first = first or ticket.expert
            called = time.perf_counter()
            try:
                response = await self.router.acompletion(
                    model=ticket.expert, stream=stream, messages=self._messages_for(ticket.expert, messages), **params
                )
            except Exception as error:  # any failure of the expert's call is a reason to try the next one
                self.rolling.release(ticket)
                failed[ticket.expert] = _reason(error)
                continue
            # the expert's own time: the call, less what LiteLLM reports spending itself
            gateway_ms = float((getattr(response, "_hidden_params", None) or {}).get("litellm_overhead_time_ms") or 0.0)
            self.stats.fallbacks += bool(failed)
            self.stats.answered[ticket.expert] += 1
            self.stats.price_sum += float(self.costs[ticket.expert])
            return Routed(
                ticket.expert,
                first,
                float(proba[ticket.expert]),
                float(self.costs[ticket.expert]),
                budget,
                failed,
                routing_ms,
                (time.perf_counter() - called) * 1000 - gateway_ms,
                response,
            )
        self.stats.unavailable += 1
        over = [e for e in self.experts if e not in failed and e not in self.rolling.affordable(budget)]
        raise ExpertsUnavailable(
            "no expert answered: "
            + "; ".join(f"{e} failed ({why})" for e, why in failed.items())
            + (f"; {over} are over the budget {budget:g} now" if over else "")
        )

    def count_usage(self, expert: str, usage) -> None:
        if usage is None:
            return
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        self.stats.prompt_tokens += prompt
        self.stats.completion_tokens += completion
        self.stats.spend_usd += (prompt + completion) * float(self.costs[expert]) / 1e6

    def report(self) -> dict:
        return {
            "model": self.model_id,
            "pool": self.pool,
            "experts": self.costs.to_dict(),
            "budget": self.budget,
            "window": self.rolling.window,
            "window_mean_price": self.rolling.window_mean(self.budget),
            **self.stats.as_dict(),
        }

    async def aclose(self) -> None:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()
        self._policy_thread.shutdown(wait=False, cancel_futures=True)


# -------------------------------------------------------------------------------------------- HTTP app


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list | None = None


class ChatRequest(BaseModel):
    """An OpenAI chat request; ``budget`` and ``subject`` are this service's own (``extra_body``), the
    other fields (max_tokens, temperature, ...) go to the expert as they are."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    budget: float | None = None
    subject: str | None = None


def _error(status: int, message: str, kind: str):
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def create_app(service: RoutingService):
    """The FastAPI app: /v1/chat/completions (streaming or not), /v1/models, /health, /v1/leeroo/stats."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await service.aclose()

    app = FastAPI(title="Leeroo orchestrator", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def malformed(request, error: RequestValidationError):
        service.stats.rejected += 1
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _error(400, f"malformed request: {problems}", "invalid_request_error")

    @app.exception_handler(RoutingError)
    async def unroutable(request, error: RoutingError):
        service.stats.rejected += 1
        return _error(400, str(error), "invalid_request_error")

    @app.exception_handler(ExpertsUnavailable)
    async def unavailable(request, error: ExpertsUnavailable):
        return _error(503, str(error), "service_unavailable")

    @app.exception_handler(Exception)
    async def unexpected(request, error: Exception):
        return _error(500, f"internal error: {_reason(error)}", "internal_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": service.model_id, "experts": service.experts}

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [{"id": service.model_id, "object": "model", "owned_by": "leeroo", "created": 0}],
        }

    @app.get("/v1/leeroo/stats")
    async def stats():
        return service.report()

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest):
        service.stats.requests += 1
        if body.model != service.model_id:
            raise RoutingError(
                f"unknown model '{body.model}': this service routes as '{service.model_id}' (GET /v1/models)"
            )
        params = dict(body.model_extra or {})
        wants_usage = bool((params.get("stream_options") or {}).get("include_usage"))
        if body.stream:  # usage of every stream, for the spend; passed on only to a client that asked for it
            params["stream_options"] = {**(params.get("stream_options") or {}), "include_usage": True}
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        routed = await service.route(messages, params, body.budget, body.subject, body.stream)
        headers = routed.headers(service.rolling.window_mean(routed.budget))
        if not body.stream:
            answer = routed.response.model_dump()
            answer["model"] = routed.expert
            service.count_usage(routed.expert, answer.get("usage"))
            return JSONResponse(answer, headers=headers)

        async def events():
            try:
                async for chunk in routed.response:
                    data = chunk.model_dump(exclude_none=True)
                    data["model"] = routed.expert
                    service.count_usage(routed.expert, data.get("usage"))
                    if not wants_usage:
                        data.pop("usage", None)
                        if not data.get("choices"):
                            continue
                    yield f"data: {json.dumps(data)}\n\n"
            except Exception as error:  # the expert broke off mid-answer: say so in the stream, never fake a reply
                service.stats.broken_streams += 1
                broken = {"message": f"{routed.expert} broke off: {_reason(error)}", "type": "expert_error"}
                yield f"data: {json.dumps({'error': broken})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


@contextlib.contextmanager
def running(app, host: str = "127.0.0.1", port: int | None = None, ready_timeout_s: float = 30.0):
    """Serve ``app`` with uvicorn in a background thread (notebooks, tests, benchmarks); yields the
    base URL (http://host:port/v1) and stops the server on exit."""
    import uvicorn

    from .expert_server import free_port

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"leeroo-service-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the routing service did not start on {host}:{port} (port taken?)")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def single_torch_thread() -> None:
    """One torch thread for this process: the policy reads one question per request, which more threads
    do not speed up, and on a few shared cores they fight the experts' own (2 cores, encoder policy:
    one-question forward pass p50 41 ms on one thread, 647 ms on two while the experts worked)."""
    import torch

    torch.set_num_threads(1)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # runs the finally blocks that stop the local experts


def main(argv: list[str] | None = None) -> None:
    """``python -m leeroo_lib.serving --profile cpu`` (``make serve``): start the local experts of the
    profile's endpoints file, load the saved orchestrator, serve until interrupted, stop everything."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m leeroo_lib.serving", description=main.__doc__)
    parser.add_argument("--profile", default=None, help="profile name (default: $LEEROO_PROFILE, else cpu)")
    parser.add_argument("--port", type=int, default=None, help="port of the service (default: the endpoints file's)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    single_torch_thread()
    cfg = load_profile(args.profile)
    config = service_config(cfg.name)
    orchestrator = Orchestrator.load(cfg.require("orchestrator"))
    if config.pool not in orchestrator.pools:
        raise SystemExit(
            f"pool '{config.pool}' (service.pool of {config.path}) is not one the orchestrator serves: "
            f"{sorted(orchestrator.pools)}"
        )
    experts = orchestrator.pools[config.pool]
    if config.stand_ins(experts):
        print(f"stand-in endpoint (see {config.path}) answers for {config.stand_ins(experts)}", flush=True)
    try:
        with local_experts(cfg, config.endpoints_for(experts)) as endpoints:
            service = RoutingService(
                orchestrator, config.pool, endpoints, config.budget, config.window, config.timeout_s, config.retries
            )
            port = args.port or config.port
            print(
                f"routing '{service.model_id}' over {service.experts} at http://{config.host}:{port}/v1 "
                f"(budget {service.budget:g} USD per 1M tokens over the last {config.window} requests); "
                "Ctrl-C stops the service and its experts",
                flush=True,
            )
            uvicorn.run(create_app(service), host=config.host, port=port, log_level="warning")
    except KeyboardInterrupt:
        pass
    print("stopped the service and the expert servers it started", flush=True)


if __name__ == "__main__":
    main()
