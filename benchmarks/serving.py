"""Load and fault test of the routing service on localhost: admission, latency, routing overhead, budget, ledger.

    python benchmarks/serving.py [--profile cpu] [--levels 4 16 64 128] [--rounds 2] [--max-seconds 90]

Starts the local experts of configs/endpoints/<profile>.yaml and the service over the saved orchestrator (notebooks
01-04 first), warms each expert up and times a lone request (its usual time; the first one's policy read is
``first_routing_ms``). Then, per level of concurrent clients, a burst: each client sends ``--rounds`` test-split
questions one after another (max_tokens 8), waiting out a 429's Retry-After before its next; no request is sent
after ``--max-seconds``, and a client gives up on one after ``CLIENT_TIMEOUT_S`` (timed out). After each burst: the
seconds until both experts' CPU is idle, then until a lone request is answered in its usual time (recovery). The
clients run in a process of their own, so they do not share the service's interpreter lock, and speak aiohttp.
Routing overhead = the latency a client sees minus the expert's own time for the call (``x-leeroo-expert-ms``). The
ledger's spend over a level is set against the answers' own usage x their experts' prices. Last, a fault phase: 16
clients at the dearest expert's price, and halfway the server of the busiest expert is killed: its requests must
fall back or be shed, none lost. Printed, and written to ``results/bench_serving.csv`` (one row per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import pandas as pd
import psutil

from leeroo_lib.config import Profile, load_endpoints, load_profile
from leeroo_lib.data.benchmarks import load_mmlu, question_texts
from leeroo_lib.evaluation.evaluate import test_questions
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.serving.app import create_app, running, single_torch_thread
from leeroo_lib.serving.endpoints import entries_for, local_experts
from leeroo_lib.serving.keys import NO_KEY
from leeroo_lib.serving.service import RoutingService

OVERHEAD_TARGET_MS = 50
MAX_TOKENS = 8
CLIENT_TIMEOUT_S = 60
IDLE_CPU_PERCENT = 10  # an expert server below this share of one core is idle
USUAL_FACTOR = 2  # an answer within this many times the lone request's latency is in its usual time
SETTLE_LIMIT_S = 60


def _error_code(text: str) -> str:
    """The service's own code for a refusal (``error.code`` of its JSON body), else its first words."""
    try:
        return str(json.loads(text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return text[:60]


async def _drive(base_url: str, model: str, texts: list[str], clients: int, rounds: int, max_seconds: float, budget):
    deadline = time.monotonic() + max_seconds
    queue, records = list(texts), []
    # aiohttp, not httpx: httpx's AsyncClient adds seconds of its own per request with a hundred in flight
    # (encode/httpx#3215), so the figures at 64 and 128 clients were the client's delay more than the service's.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def client():
            for _ in range(rounds):
                if not queue or time.monotonic() > deadline:
                    return
                text, start, started = queue.pop(0), time.perf_counter(), time.monotonic()
                body = {"model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": text}]}
                status = None
                try:
                    async with http.post(
                        f"{base_url}/chat/completions", json={**body, **({"budget": budget} if budget else {})}
                    ) as reply:
                        status, text = reply.status, await reply.text()
                    ok = status == 200
                    record = {
                        "status": status,
                        "error": None if ok else f"{status} {_error_code(text)}",
                        "total_tokens": (json.loads(text).get("usage") or {}).get("total_tokens") if ok else None,
                        **{
                            k.lower()[len("x-leeroo-") :]: v
                            for k, v in reply.headers.items()
                            if k.lower().startswith("x-leeroo-")
                        },
                    }
                except TimeoutError:
                    record = {"status": "timeout"}
                except aiohttp.ClientError as error:
                    record = {"status": None, "error": f"{type(error).__name__}: {error}"}
                records.append(
                    {
                        **record,
                        "latency_ms": (time.perf_counter() - start) * 1000,
                        "start": started,
                        "done": time.monotonic(),
                    }
                )
                if status == 429:
                    await asyncio.sleep(float(reply.headers.get("retry-after", 1)))

        await asyncio.gather(*(client() for _ in range(clients)))
    return records


def drive(base_url, model, texts, clients, rounds, max_seconds, budget=None) -> list[dict]:
    """``clients`` concurrent clients send ``rounds`` of ``texts`` each (with ``budget``, else the service's)
    until none is left or time is up; run in a child process."""
    return asyncio.run(_drive(base_url, model, texts, clients, rounds, max_seconds, budget))


def lone_request(base_url: str, model: str, text: str) -> tuple[float, httpx.Response]:
    """The seconds one request takes, alone, and its reply."""
    start = time.perf_counter()
    body = {"model": model, "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": text}]}
    reply = httpx.post(f"{base_url}/chat/completions", json=body, timeout=CLIENT_TIMEOUT_S).raise_for_status()
    return time.perf_counter() - start, reply


def experts_busy(servers) -> bool:
    """Whether any expert server (with its children) uses more than ``IDLE_CPU_PERCENT`` of a core now."""
    for server in servers:
        if server.pid is None:
            continue
        tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        for process in tree:
            process.cpu_percent(None)
        time.sleep(0.25)
        if sum(p.cpu_percent(None) for p in tree if p.is_running()) > IDLE_CPU_PERCENT:
            return True
    return False


def settle(base_url: str, model: str, text: str, servers, usual_s: float, ended: float) -> tuple[float, float]:
    """After a burst that ended at ``ended`` (time.monotonic): the seconds until the experts are idle, and
    until a lone request is answered within ``USUAL_FACTOR`` x ``usual_s``."""
    while experts_busy(servers) and time.monotonic() - ended < SETTLE_LIMIT_S:
        pass
    idle = time.monotonic() - ended
    while time.monotonic() - ended < 2 * SETTLE_LIMIT_S:
        try:
            if lone_request(base_url, model, text)[0] <= USUAL_FACTOR * usual_s:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    return idle, time.monotonic() - ended


# what an answered record carries (and an error its client's error), absent from a level where nothing was answered
RECORD_FIELDS = [
    "total_tokens",
    "error",
    "expert",
    "expert-ms",
    "routing-ms",
    "price-per-1m-usd",
    "window-mean-price",
    "full",
    "fallbacks",
]


def summary(records: list[dict], ledger_usd: float) -> dict:
    """One level's figures; a level where nothing was answered has no latency, price or overhead (NaN)."""
    frame = pd.DataFrame(records)
    frame = frame.reindex(columns=list(dict.fromkeys([*frame, *RECORD_FIELDS])))
    ok = frame[frame["status"] == 200].copy()
    shed = frame[frame["status"] == 429]
    timed_out = int((frame["status"] == "timeout").sum())
    lost = frame[~frame["status"].isin([200, 429, "timeout"])]
    ok["overhead_ms"] = ok["latency_ms"] - ok["expert-ms"].astype(float)
    price = ok["price-per-1m-usd"].astype(float)
    seconds = frame["done"].max() - frame["start"].min()
    answers_usd = float((ok["total_tokens"].astype(float) * price).sum() / 1e6)
    return {
        "sent": len(frame),
        "answered": len(ok),
        "shed": len(shed),
        "timed_out": timed_out,
        "lost": len(lost),
        # what the lost ones got: the status and the service's error code, or the client's error where none came back
        "lost_as": str(dict(Counter(lost["error"].fillna(lost["status"]).astype(str)))) if len(lost) else "",
        "shed_p99_ms": shed["latency_ms"].quantile(0.99) if len(shed) else None,
        "latency_p50_ms": ok["latency_ms"].median(),
        "latency_p99_ms": ok["latency_ms"].quantile(0.99),
        "overhead_p50_ms": ok["overhead_ms"].median(),
        "overhead_p99_ms": ok["overhead_ms"].quantile(0.99),
        "policy_p50_ms": ok["routing-ms"].astype(float).median(),
        "throughput_per_s": len(ok) / seconds,
        "mean_price": price.mean(),
        "largest_window_mean": ok["window-mean-price"].astype(float).max(),
        "ledger_usd": ledger_usd,
        "answers_usd": answers_usd,
        # equal but for the float sums' last bits (the ledger sums integer units; the answers, dollars)
        "ledger_is_usage": bool(abs(ledger_usd - answers_usd) <= 1e-9 * max(answers_usd, 1e-12)),
        "passed_over_full": int((ok["full"] != "").sum()),
        "fell_back": int((ok["fallbacks"].astype(int) > 0).sum()),
        "by_expert": ok["expert"].value_counts().to_dict(),
    }


def report(name: str, s: dict) -> None:
    print(
        f"{name}: {s['sent']} sent, {s['answered']} answered, {s['shed']} shed "
        f"(429, p99 {s['shed_p99_ms'] or 0:.0f} ms), "
        f"{s['timed_out']} timed out, {s['lost']} lost {s['lost_as']}; {s['throughput_per_s']:.2f} answers/s; "
        f"latency p50 "
        f"{s['latency_p50_ms']:.0f} ms, p99 {s['latency_p99_ms']:.0f} ms; "
        f"routing overhead p50 {s['overhead_p50_ms']:.1f} ms, "
        f"p99 {s['overhead_p99_ms']:.1f} ms (policy p50 {s['policy_p50_ms']:.1f} ms); mean price {s['mean_price']:.4f} "
        f"against {s['budget']:g}; ledger {s['ledger_usd']:.3g} USD against the answers' {s['answers_usd']:.3g}; "
        f"experts idle after {s.get('experts_idle_s') or 0:.1f} s, usual answer after {s.get('recovery_s') or 0:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--levels", type=int, nargs="+", default=[4, 16, 64, 128], help="concurrent clients")
    parser.add_argument("--rounds", type=int, default=2, help="requests per client and level")
    parser.add_argument("--max-seconds", type=float, default=90, help="per level: no new request after this")
    args = parser.parse_args()

    single_torch_thread()  # as `make serve` runs the service
    cfg = load_profile(args.profile)
    settings = load_endpoints(cfg.name)
    per_level = max(args.levels) * args.rounds
    # All clients here share one key: the rate limit per key is lifted, and the spend goes to a ledger of its
    # own (not the profile's, whose daily caps `make serve` spends against).
    service_settings = settings.service.model_copy(update={"key_requests_per_minute": 100 * per_level})
    orchestrator = Orchestrator.load(cfg.require("orchestrator"))
    experts = orchestrator.served(service_settings.pool)
    texts = question_texts(test_questions(load_mmlu(), pd.read_csv(cfg.require("splits")), per_level, cfg.seed))
    with (
        local_experts(cfg, entries_for(settings, experts), free_ports=True) as endpoints,
        tempfile.TemporaryDirectory() as ledger_dir,
    ):
        service = RoutingService(orchestrator, endpoints, service_settings, Path(ledger_dir) / "ledger.sqlite3")

        def spent() -> float:
            return service.report(NO_KEY)["spend_usd"]

        def answered() -> Counter:
            return Counter(service.report(NO_KEY)["by_expert"])

        servers = [ep.server for ep in {ep.base_url: ep for ep in endpoints.values()}.values() if ep.server]
        print(
            f"profile {cfg.name}: '{service.model_id}' over {experts} (prices {service.costs.to_dict()}), "
            f"budget {service.budget:g} over windows of {service.rolling.window}, "
            f"{type(orchestrator.policy_for(experts)).__name__}; slots per expert "
            f"{ {e: ep.max_parallel_requests for e, ep in endpoints.items()} }, "
            f"slot_wait_s {service_settings.slot_wait_s}",
            flush=True,
        )
        phases = []
        with running(create_app(service)) as base_url, multiprocessing.get_context("spawn").Pool(1) as clients:
            for endpoint in {ep.base_url: ep for ep in endpoints.values()}.values():  # an expert's first call is slow
                httpx.post(
                    f"{endpoint.base_url}/completions",
                    timeout=600,
                    json={"model": endpoint.model, "max_tokens": 1, "prompt": "Hi"},
                ).raise_for_status()
            lone = [lone_request(base_url, service.model_id, texts[i]) for i in range(3)]
            usual_s = sorted(seconds for seconds, _ in lone)[1]
            # the policy's read of the first request the service got (it read one question before it listened)
            first_ms = float(lone[0][1].headers["x-leeroo-routing-ms"])
            print(f"a lone request: {usual_s:.2f} s (usual); the first one's routing {first_ms:.1f} ms", flush=True)
            lone_figures = {"usual_s": usual_s, "first_routing_ms": first_ms}  # in every phase's row
            for level in args.levels:
                before = spent()
                load = clients.apply(drive, (base_url, service.model_id, texts, level, args.rounds, args.max_seconds))
                ended, level_spend = time.monotonic(), spent() - before  # before the recovery probes add theirs
                idle_s, recovery_s = settle(base_url, service.model_id, texts[0], servers, usual_s, ended)
                row = {"phase": "load", "clients": level, "budget": service.budget, **lone_figures}
                row |= summary(load, level_spend) | {"experts_idle_s": idle_s, "recovery_s": recovery_s}
                phases.append(row)
                report(f"load, {level} clients", row)
                write_phases(cfg, phases)

            own = [e for e in experts if endpoints[e].server is not None]
            if len({endpoints[e].base_url for e in own}) < 2:
                print("fault: skipped, fewer than two experts have a local server of their own")
                return
            ample, level, before, spend = float(service.costs.max()), 16, answered(), spent()
            pending = clients.apply_async(
                drive, (base_url, service.model_id, texts, level, args.rounds, args.max_seconds, ample)
            )
            deadline = time.monotonic() + args.max_seconds
            while sum((answered() - before).values()) < level // 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            served = answered() - before
            victim = max(own, key=lambda e: served[e])
            endpoints[victim].server.stop()
            fault = {"phase": f"fault: {victim} killed", "clients": level, "budget": ample, **lone_figures}
            fault |= summary(pending.get(), spent() - spend)
            print(
                f"fault (budget {ample:g}): killed the server of {victim}, the busiest, "
                f"after {sum(served.values())} answers"
            )
            report("fault", fault)
            write_phases(cfg, [*phases, fault])


def write_phases(profile: Profile, phases: list[dict]) -> None:
    path = profile.output_path("results", "bench_serving.csv")
    pd.DataFrame(phases).assign(by_expert=lambda t: t["by_expert"].map(str)).to_csv(path, index=False)
    print(f"written to {path}", flush=True)


if __name__ == "__main__":
    main()
