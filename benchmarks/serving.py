"""Load and fault test of the routing service on localhost: throughput, routing overhead, budget, lost requests.

    python benchmarks/serving.py [--profile cpu] [--clients 4] [--requests 40] [--max-seconds 240]

Starts the local experts of configs/endpoints/<profile>.yaml and the service over the saved orchestrator
(notebooks 01-04 first), warms each expert up, then runs two phases of ``--requests`` test-split
questions sent by ``--clients`` concurrent clients at the service's default budget (each phase stops
issuing requests after ``--max-seconds``). The clients run in a process of their own, so they do not
share the service's interpreter lock. Routing overhead = the latency a client sees minus the expert's
own time for the call (the ``x-leeroo-expert-ms`` header). In the second phase the requests carry a
budget at the dearest expert's price and, halfway, the server of the busiest expert that has one of
its own is killed: its requests must fall back, none may be lost. (At a tight budget a request whose
expert died may find no other within its window: a 503 by design, never an overspend.) Printed, and written
to ``results/bench_serving.csv`` (one row per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import pandas as pd

from leeroo_lib.config import load_endpoints, load_profile
from leeroo_lib.data.benchmarks import load_mmlu, question_texts
from leeroo_lib.evaluation.evaluate import test_questions
from leeroo_lib.routing.orchestrator import Orchestrator
from leeroo_lib.serving.app import create_app, running, single_torch_thread
from leeroo_lib.serving.endpoints import entries_for, local_experts
from leeroo_lib.serving.keys import NO_KEY
from leeroo_lib.serving.service import RoutingService

OVERHEAD_TARGET_MS = 50


async def _drive(
    base_url: str, model: str, texts: list[str], clients: int, max_seconds: float, budget: float | None
) -> list[dict]:
    deadline = time.monotonic() + max_seconds
    queue, records = list(texts), []
    async with httpx.AsyncClient(timeout=600) as http:

        async def client():
            while queue and time.monotonic() < deadline:
                text = queue.pop(0)
                start, started = time.perf_counter(), time.monotonic()
                try:
                    reply = await http.post(
                        f"{base_url}/chat/completions",
                        json={
                            "model": model,
                            "max_tokens": 1,
                            "messages": [{"role": "user", "content": text}],
                            **({"budget": budget} if budget is not None else {}),
                        },
                    )
                    record = {
                        "status": reply.status_code,
                        **{k[len("x-leeroo-") :]: v for k, v in reply.headers.items() if k.startswith("x-leeroo-")},
                    }
                except httpx.HTTPError as error:
                    record = {"status": None, "error": f"{type(error).__name__}: {error}"}
                records.append(
                    {
                        **record,
                        "latency_ms": (time.perf_counter() - start) * 1000,
                        "start": started,
                        "done": time.monotonic(),
                    }
                )

        await asyncio.gather(*(client() for _ in range(clients)))
    return records


def drive(
    base_url: str, model: str, texts: list[str], clients: int, max_seconds: float, budget: float | None = None
) -> list[dict]:
    """``clients`` concurrent clients send ``texts`` (with ``budget``, else the service's) until none is
    left or time is up; run in a child process."""
    return asyncio.run(_drive(base_url, model, texts, clients, max_seconds, budget))


def summary(records: list[dict]) -> dict:
    frame = pd.DataFrame(records)
    ok = frame[frame["status"] == 200].copy()
    ok["overhead_ms"] = ok["latency_ms"] - ok["expert-ms"].astype(float)
    price = ok["price-per-1m-usd"].astype(float)
    seconds = frame["done"].max() - frame["start"].min()
    return {
        "sent": len(frame),
        "answered": len(ok),
        "lost": len(frame) - len(ok),
        "throughput_per_s": len(ok) / seconds,
        "overhead_p50_ms": ok["overhead_ms"].median(),
        "overhead_p99_ms": ok["overhead_ms"].quantile(0.99),
        "policy_p50_ms": ok["routing-ms"].astype(float).median(),
        "expert_p50_ms": ok["expert-ms"].astype(float).median(),
        "mean_price": price.mean(),
        "largest_window_mean": ok["window-mean-price"].astype(float).max(),
        "fell_back": int((ok["fallbacks"].astype(int) > 0).sum()),
        "by_expert": ok["expert"].value_counts().to_dict(),
    }


def report(name: str, s: dict, budget: float) -> None:
    print(f"{name}: {s['answered']}/{s['sent']} answered, {s['lost']} lost, {s['throughput_per_s']:.2f} requests/s")
    print(
        f"  routing overhead p50 {s['overhead_p50_ms']:.1f} ms, p99 {s['overhead_p99_ms']:.1f} ms "
        f"(target p50 < {OVERHEAD_TARGET_MS} ms: {'met' if s['overhead_p50_ms'] < OVERHEAD_TARGET_MS else 'NOT met'}); "
        f"policy p50 {s['policy_p50_ms']:.1f} ms; expert's own p50 {s['expert_p50_ms']:.0f} ms"
    )
    print(
        f"  mean price {s['mean_price']:.4f} against budget {budget:g} USD per 1M tokens; largest window mean "
        f"{s['largest_window_mean']:.4f}; fell back {s['fell_back']}; by expert {s['by_expert']}"
    )


def write_phases(cfg, phases: list[dict]) -> None:
    path = cfg.output_path("results", "bench_serving.csv")
    pd.DataFrame(phases).assign(by_expert=lambda t: t["by_expert"].map(str)).to_csv(path, index=False)
    print(f"written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=40, help="requests per phase")
    parser.add_argument("--max-seconds", type=float, default=240, help="per phase: no new request after this")
    args = parser.parse_args()

    single_torch_thread()  # as `make serve` runs the service
    cfg = load_profile(args.profile)
    settings = load_endpoints(cfg.name)
    # All clients here share one key: the rate limit per key is lifted, and the spend goes to a ledger of its
    # own (not the profile's, whose daily caps `make serve` spends against).
    service_settings = settings.service.model_copy(update={"key_requests_per_minute": 2 * args.requests})
    orchestrator = Orchestrator.load(cfg.require("orchestrator"))
    experts = orchestrator.pools[service_settings.pool]
    questions = test_questions(load_mmlu(), pd.read_csv(cfg.require("splits")), 2 * args.requests, cfg.seed)
    texts = question_texts(questions)
    with (
        local_experts(cfg, entries_for(settings, experts), free_ports=True) as endpoints,
        tempfile.TemporaryDirectory() as ledger_dir,
    ):
        service = RoutingService(orchestrator, endpoints, service_settings, Path(ledger_dir) / "ledger.sqlite3")

        def answered() -> Counter:
            return Counter(service.report(NO_KEY)["by_expert"])

        servers = {ep.base_url: ep.server for ep in endpoints.values()}
        print(
            f"profile {cfg.name}: '{service.model_id}' over {experts} (prices {service.costs.to_dict()}), "
            f"budget {service.budget:g} over windows of {service.rolling.window}, "
            f"{type(orchestrator.policy_for(experts)).__name__}; "
            f"{args.clients} clients, {args.requests} requests per phase, {len(servers)} expert server(s)"
        )
        with running(create_app(service)) as base_url, multiprocessing.get_context("spawn").Pool(1) as clients:
            for endpoint in {ep.base_url: ep for ep in endpoints.values()}.values():  # an expert's first call is slow
                httpx.post(
                    f"{endpoint.base_url}/completions",
                    timeout=600,
                    json={"model": endpoint.model, "max_tokens": 1, "prompt": "Hi"},
                ).raise_for_status()
            load = clients.apply(
                drive, (base_url, service.model_id, texts[: args.requests], args.clients, args.max_seconds)
            )
            phases = [{"phase": "load", "budget": service.budget, **summary(load)}]
            report("load", phases[0], service.budget)

            own = [
                e
                for e in experts
                if endpoints[e].server is not None
                and sum(ep.base_url == endpoints[e].base_url for ep in endpoints.values()) == 1
            ]
            if not own:
                print("fault: skipped, no expert has a local server of its own to kill")
                write_phases(cfg, phases)
                return
            ample = float(service.costs.max())
            before = answered()
            pending = clients.apply_async(
                drive, (base_url, service.model_id, texts[args.requests :], args.clients, args.max_seconds, ample)
            )
            deadline = time.monotonic() + args.max_seconds
            while sum((answered() - before).values()) < args.requests // 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            served = answered() - before
            victim = max(own, key=lambda e: served[e])
            endpoints[victim].server.stop()
            fault = summary(pending.get())
            print(
                f"fault (budget {ample:g}: every expert left is affordable): killed the server of {victim}, the "
                f"busiest so far, after {sum(served.values())} answers"
            )
            report("fault", fault, ample)
            print(f"  after the kill: {fault['fell_back']} requests fell back, {fault['lost']} lost")
            write_phases(cfg, [*phases, {"phase": f"fault: {victim} killed", "budget": ample, **fault}])


if __name__ == "__main__":
    main()
