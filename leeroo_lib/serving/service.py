"""The routing service: which expert answers each chat request, and the call to it.

Figure 1 of the paper as a server. A request is first admitted: its key's rate (``request_limits``), the
daily caps (``ledger``), its budget (``routing.budget.check_affordable``). Then the saved orchestrator's
policy reads the question (the last user message), the online budget picks the most likely expert it
affords among those whose prompt limit the request fits, and the request goes to that expert's own
OpenAI-compatible endpoint (``transformers serve`` here, vLLM or a hosted API elsewhere). Every answer's
real cost (its ``usage`` tokens x the expert's price) goes to the ledger once: when it ends, when the client
goes away mid-stream, or when a shutdown cuts it (then counted from what was sent and written).

Why LiteLLM's Router forwards the calls: it is a well-kept gateway that speaks to any OpenAI-compatible
server (chat or text completions), with timeouts, retries and a uniform response and error model, so
nothing here formats HTTP by hand. The routing decision stays here rather than in a LiteLLM
``CustomRoutingStrategyBase``: a strategy picks one deployment of one model group and returns no ranking,
while here the decision needs the budget window, goes into the response headers, and a failed expert must
give way to the *next best affordable* one, re-decided against the window as it is then. So each expert
is its own LiteLLM model group, and the fallback loop walks the policy's ranking.

Budget online (Eq. 1 has a batch; a service has a stream): ``routing.budget.RollingBudget``, the paper's
sequential rule applied to each request as the last query of a rolling window of the ``window`` most
recent requests that carry the same budget. A request may carry its own ``budget``
(``extra_body={"budget": 0.6}``); without one it has the service's.

Admission per expert (LiteLLM's own per-deployment ``max_parallel_requests``): an expert holds at most that
many requests, a stream until it is closed; LiteLLM answers a call to a full one with a RateLimitError at
once. The request then goes to the next best affordable expert with room (the ``x-leeroo-full`` header names
those it passed over); when every one is full it waits up to ``slot_wait_s`` for a slot to free, then gets a
429 with Retry-After. Nothing queues at an expert beyond its slots, so a burst leaves it little to work off.
Nor does a burst queue at the policy: the service holds at most as many requests (routed, or being answered) as
its experts have slots, and a request beyond them waits for a place up to ``slot_wait_s`` (as many wait as
there are places; a request beyond them is told at once), then gets the same 429 before the policy reads it. So a
shed request is told at once, not after every request ahead of it was read.

No orphaned work: every call to an expert is a stream, even for a client that asked for one answer (assembled
here with LiteLLM's ``stream_chunk_builder``), since ``transformers serve`` stops generating only when a
stream's connection closes; a plain request runs to its max_tokens after its client left. A call is closed
when its client leaves (``app``), when the service shuts down (``close``: its client gets 503 at once, a
stream an error event) or when it times out.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import anyio
import pandas as pd

from ..config import ServiceSettings
from ..data.embeddings import uncached_copy
from ..routing.budget import RollingBudget, check_affordable, price_units
from ..routing.orchestrator import Orchestrator
from ..routing.policies.baselines import OraclePolicy
from .chat import chat_prompt, chat_question
from .endpoints import Endpoint
from .errors import InvalidRequest, RateLimited, Unavailable, reason
from .ledger import Ledger, Spend
from .request_limits import RequestLimits, TokenCounter

# No expert costs a million USD per 1M tokens; far larger budgets overflow RollingBudget's int64 sums.
MAX_BUDGET = 1e6
RETRY_AFTER_S = 1  # what a request shed because every expert is full is told to wait (whole seconds, as HTTP says)
WARM_UP = [{"role": "user", "content": "Which planet is the largest?"}]


@dataclass
class Stats:
    """What this process has seen since it started (the spend is in the ledger)."""

    requests: int = 0
    fallbacks: int = 0
    unavailable: int = 0
    rejected: int = 0
    broken_streams: int = 0
    shed: int = 0  # answered by another expert because the chosen one was full
    busy: int = 0  # 429: every expert the request could go to was full
    clients_gone: int = 0  # left before their answer; the expert's call was closed


@dataclass
class Routed:
    """One request on its way: who asked, the expert's response (or stream) and the decision behind it."""

    request_id: str
    key: str
    expert: str
    first_choice: str
    proba: float
    price: float
    budget: float
    max_tokens: int
    prompt_tokens: int  # as the service counted them for the expert, before the call
    failed: dict[str, str]
    full: list[str]  # experts passed over because every slot of theirs was taken
    routing_ms: float
    expert_ms: float
    response: object  # the answer (a ModelResponse), or the expert's stream with its first chunk read
    first_chunk: object = None

    def headers(self, window_mean: float) -> dict[str, str]:
        values = {
            "request-id": self.request_id,
            "expert": self.expert,
            "first-choice": self.first_choice,
            "success-proba": f"{self.proba:.4f}",
            "price-per-1m-usd": f"{self.price:g}",
            "budget": f"{self.budget:g}",
            "window-mean-price": f"{window_mean:.6g}",
            "max-tokens": str(self.max_tokens),
            "fallbacks": str(len(self.failed)),
            "failed": "; ".join(f"{e}: {why}" for e, why in self.failed.items()),
            "full": "; ".join(self.full),
            "routing-ms": f"{self.routing_ms:.2f}",
            "expert-ms": f"{self.expert_ms:.2f}",
        }
        return {f"x-leeroo-{name}": _header_value(value) for name, value in values.items()}


def _header_value(text: str, limit: int = 500) -> str:
    """``text`` as an HTTP header value: printable ASCII on one line, no edge spaces (h11 refuses them)."""
    return "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))[:limit].strip()


def _reported(usage) -> tuple[int, int] | None:
    """The prompt and completion tokens an expert reported, if it reported both as counts."""
    if not isinstance(usage, dict):
        return None
    tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return tokens if all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens) else None


async def _close_streams(result) -> None:
    """Close the expert's stream in a result no one will read (it holds the expert's slot and connection)."""
    for part in result if isinstance(result, tuple) else (result,):
        if hasattr(part, "aclose"):
            with anyio.CancelScope(shield=True):
                await part.aclose()


class RoutingService:
    """The orchestrator over one pool's served experts (``settings.pool``), each reached at its endpoint
    through LiteLLM, with the spend of every answer in the ledger at ``ledger_path``."""

    def __init__(
        self, orchestrator: Orchestrator, endpoints: dict[str, Endpoint], settings: ServiceSettings, ledger_path: Path
    ):
        pool = settings.pool
        self.experts = list(orchestrator.served(pool))
        missing = [e for e in self.experts if e not in endpoints]
        if missing:
            raise ValueError(
                f"pool '{pool}' serves {missing} but the endpoints give no endpoint for them: add an "
                f"entry per expert to configs/endpoints/<profile>.yaml"
            )
        self.policy, self.embedder = uncached_copy(orchestrator.policy_for(self.experts))
        if isinstance(self.policy, OraclePolicy):
            raise ValueError("the oracle reads recorded outcomes, not a question: it cannot route new requests")
        self.orchestrator = orchestrator
        self.settings = settings
        self.pool = pool
        self.model_id = f"leeroo-{pool}"
        self.endpoints = {e: endpoints[e] for e in self.experts}
        self.costs = orchestrator.costs[self.experts]
        self.units = dict(zip(self.experts, price_units(self.costs).tolist()))
        try:
            check_affordable(self.costs, settings.budget)
        except ValueError as error:
            raise ValueError(f"service.budget of the endpoints file: {error}") from None
        self.budget = settings.budget
        self.rolling = RollingBudget(self.costs, settings.window)
        self.limits = RequestLimits(settings)
        self.counters = {e: TokenCounter(ep) for e, ep in self.endpoints.items()}
        self.ledger = Ledger(ledger_path, settings.key_daily_cap_usd, settings.daily_cap_usd)
        self.stats = Stats()
        self._closing = asyncio.Event()
        self._slot_freed = asyncio.Event()  # set, and replaced, whenever a call to an expert ends
        self.places = sum(ep.max_parallel_requests for ep in self.endpoints.values())
        self._taken = 0  # requests holding a place: being routed, calling an expert, or being answered
        self._waiting = 0  # requests waiting for a place
        self._policy_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.router = self._litellm_router(settings.timeout_s, settings.retries)
        self.read(WARM_UP, None)  # the policy's first read is slow (1.7 s for an encoder): before the first request

    def _litellm_router(self, timeout_s: float, retries: int):
        """LiteLLM's Router with one model group per expert, each holding at most its ``max_parallel_requests``
        (a full one fails at once, never retried: the request goes elsewhere). Offline it must use its bundled
        price map rather than fetch one, hence the environment variable before the import."""
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm
        from litellm.types.router import RetryPolicy

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        return litellm.Router(
            num_retries=retries,
            retry_policy=RetryPolicy(RateLimitErrorRetries=0),
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
                        "max_parallel_requests": ep.max_parallel_requests,
                    },  # retries are the Router's (num_retries), not the SDK's
                }
                for expert, ep in self.endpoints.items()
            ],
        )

    def check_budget(self, budget) -> float:
        """A request's budget, or the service's; 400 for one that is not a finite number buying the cheapest expert."""
        if budget is None:
            return self.budget
        try:
            check_affordable(self.costs, budget)
        except (TypeError, ValueError) as error:
            raise InvalidRequest(str(error), "budget") from None
        if budget > MAX_BUDGET:
            raise InvalidRequest(
                f"budget {budget} is over {MAX_BUDGET:g} USD per 1M tokens, the largest this service takes: a budget "
                f"above the dearest expert's price ({self.costs.max():g}) buys nothing more",
                "budget",
            )
        return float(budget)

    def read(self, messages: list[dict], subject: str | None) -> tuple[pd.Series, dict[str, int]]:
        """The policy's chance of success per expert of the pool, and the prompt's tokens as each expert
        is sent it (blocking: run it off the event loop). The question's vector is not kept."""
        proba = self.policy.predict_proba(chat_question(messages, subject)).iloc[0][self.experts]
        if self.embedder is not None:
            self.embedder.forget()
        return proba, {e: counter.prompt(messages) for e, counter in self.counters.items()}

    def _messages_for(self, expert: str, messages: list[dict]) -> list[dict]:
        if self.endpoints[expert].api == "completions":
            return [{"role": "user", "content": chat_prompt(messages)}]
        return messages

    async def until_closed(self, awaitable):
        """The result of ``awaitable``, unless the service starts closing first: then it is cancelled (its
        expert's connection closed) and the request gets 503."""
        work = asyncio.ensure_future(awaitable)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            done, _ = await asyncio.wait({work, closing}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the caller was cancelled: a stream that came in the meantime is closed unread
            if work.done() and not work.cancelled() and work.exception() is None:
                await _close_streams(work.result())
            raise
        finally:  # also when the caller itself is cancelled
            closing.cancel()
            if not work.done():
                work.cancel()
        if work not in done:
            raise Unavailable(
                "the service is shutting down: the expert's answer was cut off; send the request again once it is back",
                "shutting_down",
            )
        return work.result()

    def _ended(self) -> None:
        """A call to an expert ended: its slot is free; wake the requests waiting for one."""
        self._slot_freed.set()
        self._slot_freed = asyncio.Event()

    async def _call(self, expert: str, messages: list[dict], params: dict, stream: bool):
        """The expert's answer, asked for as a stream (see the module's docstring) with its usage. Not
        streamed: assembled into one ModelResponse. Streamed: the stream, and its first chunk, read here since
        LiteLLM frees the expert's slot and connection when a *started* stream is closed, not an unread one."""
        import litellm

        response = await self.router.acompletion(
            model=expert,
            stream=True,
            stream_options={"include_usage": True},
            messages=self._messages_for(expert, messages),
            **params,
        )
        try:
            if stream:
                return response, await anext(aiter(response), None)
            answer = litellm.stream_chunk_builder([chunk async for chunk in response])
            if answer is None:
                raise ValueError(f"{expert} sent an empty stream")
            return answer, None
        except BaseException:
            with anyio.CancelScope(shield=True):
                await response.aclose()
            raise

    async def _wait_for_slot(self, deadline: float) -> bool:
        """Whether a call to some expert ended before ``deadline`` (time.monotonic)."""
        with anyio.move_on_after(deadline - time.monotonic()) as waited:
            await self.until_closed(self._slot_freed.wait())
        return not waited.cancelled_caught

    def _busy(self, full, why: str | None = None) -> RateLimited:
        self.stats.busy += 1
        why = why or f"none freed within {self.settings.slot_wait_s:g} s (service.slot_wait_s)"
        return RateLimited(
            f"every expert this request may go to is busy: {sorted(full)} have all their slots in use "
            f"(max_parallel_requests of the endpoints file) and {why}; retry in {RETRY_AFTER_S} s",
            "experts_busy",
            retry_after_s=RETRY_AFTER_S,
        )

    async def _take_place(self) -> None:
        """One of the service's ``places`` (its experts' slots in all), waited for up to ``slot_wait_s``, else 429.
        At most as many requests wait as there are places: a slot frees when a call ends, so a longer line would
        mostly wait out ``slot_wait_s`` for its 429; beyond it a request is told at once."""
        if self._taken >= self.places and self._waiting >= self.places:
            raise self._busy(self.experts, f"{self._waiting} requests already wait for one")
        deadline = time.monotonic() + self.settings.slot_wait_s
        self._waiting += 1
        try:
            while self._taken >= self.places:
                if not await self._wait_for_slot(deadline):
                    raise self._busy(self.experts)
        finally:
            self._waiting -= 1
        self._taken += 1

    def _release_place(self) -> None:
        self._taken -= 1
        self._ended()

    async def route(
        self, key: str, messages: list[dict], params: dict, budget=None, subject: str | None = None, stream=False
    ) -> Routed:
        """Admit (a place among the experts' slots included), decide, then call the chosen expert; when it is full
        or fails, the next best affordable one; when every one left is full, wait for a slot up to ``slot_wait_s``,
        then 429. The place is held until ``record`` (or given back here, when no answer comes)."""
        if self._closing.is_set():
            raise Unavailable("the service is shutting down: send the request again once it is back", "shutting_down")
        await self.limits.admit(key)
        self.ledger.admit(key)
        budget = self.check_budget(budget)
        await self._take_place()
        try:
            return await self._route(key, messages, params, budget, subject, stream)
        except BaseException:
            self._release_place()
            raise

    async def _route(self, key: str, messages: list[dict], params: dict, budget: float, subject, stream) -> Routed:
        start = time.perf_counter()
        proba, prompt_tokens = await asyncio.get_running_loop().run_in_executor(
            self._policy_thread, self.read, messages, subject
        )
        routing_ms = (time.perf_counter() - start) * 1000
        too_long = {
            e: f"a prompt of {n} tokens is over its limit of {self.endpoints[e].max_prompt_tokens} (max_prompt_tokens)"
            for e, n in prompt_tokens.items()
            if n > self.endpoints[e].max_prompt_tokens
        }
        import litellm

        failed, full, passed_over, first = {}, set(), [], None
        deadline = time.monotonic() + self.settings.slot_wait_s
        while True:
            ticket = self.rolling.take(proba, budget, exclude={**too_long, **failed, **dict.fromkeys(full)})
            if ticket is None and full and await self._wait_for_slot(deadline):
                full.clear()  # a slot freed somewhere: try them again
                continue
            if ticket is None:
                break
            first = first or ticket.expert
            called = time.perf_counter()
            try:
                response, first_chunk = await self.until_closed(self._call(ticket.expert, messages, params, stream))
            except (Unavailable, asyncio.CancelledError):
                self.rolling.release(ticket)
                self._ended()
                raise
            except litellm.RateLimitError:  # every slot of the expert is taken (or it said so itself)
                self.rolling.release(ticket)
                full.add(ticket.expert)
                passed_over += [ticket.expert] if ticket.expert not in passed_over else []
                continue
            except Exception as error:  # any failure of the expert's call is a reason to try the next one
                self.rolling.release(ticket)
                self._ended()
                failed[ticket.expert] = reason(error)
                continue
            # the expert's own time: the call, less what LiteLLM reports spending itself
            gateway_ms = float((getattr(response, "_hidden_params", None) or {}).get("litellm_overhead_time_ms") or 0.0)
            self.stats.fallbacks += bool(failed)
            self.stats.shed += bool(passed_over)
            return Routed(
                uuid.uuid4().hex,
                key,
                ticket.expert,
                first,
                float(proba[ticket.expert]),
                float(self.costs[ticket.expert]),
                budget,
                params["max_tokens"],
                prompt_tokens[ticket.expert],
                failed,
                passed_over,
                routing_ms,
                (time.perf_counter() - called) * 1000 - gateway_ms,
                response,
                first_chunk,
            )
        if full:
            raise self._busy(full)
        over = [e for e in self.experts if e not in failed and e not in self.rolling.affordable(budget)]
        why = [f"{e} failed ({why})" for e, why in failed.items()]
        why += [f"{e}: {why}" for e, why in too_long.items()]
        why += [f"{over} are over the budget {budget:g} now"] if over else []
        if not failed:  # nothing was tried: the prompt is too long for every expert the budget affords
            raise InvalidRequest(f"no expert takes this request: {'; '.join(why)}; shorten it", "max_prompt_tokens")
        self.stats.unavailable += 1
        raise Unavailable("no expert answered: " + "; ".join(why), "experts_unavailable")

    async def chunks(self, routed: Routed):
        """The chunks of a streamed answer (the first one read by ``route``), each one ``until_closed``."""
        if routed.first_chunk is not None:
            yield routed.first_chunk
        iterator = aiter(routed.response)
        while True:
            try:
                chunk = await self.until_closed(anext(iterator))
            except StopAsyncIteration:
                return
            yield chunk

    def record(self, routed: Routed, usage, written: str, outcome: str) -> None:
        """Put an answer's cost into the ledger: the tokens the expert reported, else those the service
        counts (the prompt as sent, and what the expert wrote before the answer ended). Its place is free again."""
        self._release_place()
        reported = _reported(usage)
        prompt, completion = reported or (routed.prompt_tokens, self.counters[routed.expert].text(written))
        self.ledger.record(
            Spend(
                routed.request_id,
                routed.key,
                routed.expert,
                self.units[routed.expert],
                prompt,
                completion,
                outcome,
                reported is not None,
            )
        )

    def report(self, key: str) -> dict:
        """The service, what this process has seen, and the ledger's spend (with today's, for ``key``)."""
        return {
            "model": self.model_id,
            "pool": self.pool,
            "experts": self.costs.to_dict(),
            "budget": self.budget,
            "window": self.rolling.window,
            "window_mean_price": self.rolling.window_mean(self.budget),
            **vars(self.stats),
            **self.ledger.report(key),
        }

    def close(self) -> None:
        """Start shutting down: every expert call in flight is cut, every new request gets 503."""
        self._closing.set()

    async def aclose(self) -> None:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        self.close()
        await close_litellm_async_clients()
        self._policy_thread.shutdown(wait=False, cancel_futures=True)
        self.ledger.close()
