"""Routing speed on CPU: wall time and peak memory to route 1,000 questions of a pool's benchmark with the saved
orchestrator (reading the questions with its policy included), in both allocation modes.

    python benchmarks/routing.py [--profile cpu] [--questions 1000] [--budget 0.6] [--pool open]

Reads the orchestrator that notebooks/04_policy.ipynb saved for the profile. Printed, and written to
``results/bench_routing.csv`` (one row per run).
"""

from __future__ import annotations

import argparse
import resource
import time

import pandas as pd
import torch

from leeroo_lib.config import load_profile
from leeroo_lib.data.benchmarks import load_questions
from leeroo_lib.routing.budget import allocate
from leeroo_lib.routing.orchestrator import Orchestrator


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--budget", type=float, default=0.6)
    parser.add_argument("--pool", default="open", help="a pool of the saved orchestrator (its served experts)")
    args = parser.parse_args()

    cfg = load_profile(args.profile)
    questions = load_questions(cfg.pools[args.pool].benchmark).sample(args.questions, random_state=cfg.seed)
    before_load = peak_rss_mib()
    start = time.perf_counter()
    orchestrator = Orchestrator.load(cfg.require("orchestrator"))
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    routes = orchestrator.route(questions, args.budget, pool=args.pool)
    route_s = time.perf_counter() - start
    policy = orchestrator.policy_for(orchestrator.pools[args.pool])
    proba = policy.predict_proba(questions)[orchestrator.pools[args.pool]]
    allocation_s = {}
    for mode in ("sequential", "global"):
        start = time.perf_counter()
        allocate(proba, orchestrator.costs, args.budget, mode)
        allocation_s[mode] = time.perf_counter() - start

    print(
        f"profile {cfg.name}, policy {type(policy).__name__}, mode {orchestrator.mode}, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"load orchestrator:        {load_s:7.2f} s")
    print(
        f"route {len(questions)} questions:    {route_s:7.2f} s  ({len(questions) / route_s:.0f} questions/s, "
        f"pool {args.pool}, budget {args.budget}, mean cost {orchestrator.costs[routes].mean():.3f})"
    )
    for mode, seconds in allocation_s.items():
        print(f"  allocation alone, {mode:10s} {seconds:7.3f} s")
    print(
        f"peak memory (RSS):        {peak_rss_mib():7.0f} MiB  ({peak_rss_mib() - before_load:.0f} MiB above "
        "the process before loading the orchestrator)"
    )
    row = {
        "profile": cfg.name,
        "policy": type(policy).__name__,
        "mode": orchestrator.mode,
        "torch_threads": torch.get_num_threads(),
        "pool": args.pool,
        "budget": args.budget,
        "questions": len(questions),
        "load_s": load_s,
        "route_s": route_s,
        "questions_per_s": len(questions) / route_s,
        "mean_cost": orchestrator.costs[routes].mean(),
        **{f"allocation_{mode}_s": seconds for mode, seconds in allocation_s.items()},
        "peak_rss_mib": peak_rss_mib(),
        "above_load_mib": peak_rss_mib() - before_load,
    }
    pd.DataFrame([row]).to_csv(cfg.output_path("results", "bench_routing.csv"), index=False)


if __name__ == "__main__":
    main()
