"""``leeroo``: one command line for the project, a subcommand per job (as ``lm_eval`` or ``vllm serve``).

    leeroo check-profile [PROFILE ...]          validate configs/<profile>.yaml (and its endpoints file)
    leeroo score --profile P --expert NAME      score one live expert through lm-eval (--shard I/N, --merge)
    leeroo route --profile P --questions F      route a CSV/JSONL of questions with the saved orchestrator
    leeroo serve --profile P                    the orchestrator behind an OpenAI-compatible service
    leeroo cv --profile P [--train-on T]        cross-validate the cheap policies inside the training split
    leeroo report [--check]                     rewrite the README's and docs/'s results from results/

Each subcommand imports what it needs when it runs, so ``leeroo --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROFILE_HELP = "configs/<profile>.yaml (default: $LEEROO_PROFILE, else cpu)"


def _shard(text: str) -> tuple[int, int]:
    parts = text.split("/")
    if len(parts) == 2 and all(p.isdigit() for p in parts) and int(parts[0]) < int(parts[1]):
        return int(parts[0]), int(parts[1])
    raise argparse.ArgumentTypeError(f"--shard takes I/N with 0 <= I < N (e.g. 0/4), not '{text}'")


def check_profile(args: argparse.Namespace) -> int:
    from .config import ENDPOINTS_DIR, load_endpoints, load_profile
    from .routing.policies import policy_named

    for name in args.profiles or [None]:
        profile = load_profile(name)
        for policy in profile.policy.compared:  # the schema cannot import the registry (a lower layer): here
            policy_named(policy)
        if (ENDPOINTS_DIR / f"{profile.name}.yaml").is_file():
            load_endpoints(profile.name)
    return 0


def score(args: argparse.Namespace) -> int:
    from .config import load_profile
    from .experts.scoring import merge_shards, run_job, scores_path

    cfg = load_profile(args.profile)
    cfg.live_expert(args.expert)
    if args.merge:
        merged = merge_shards(cfg, args.expert)
        print(f"{args.expert}: {len(merged)} questions in {scores_path(cfg, args.expert)}")
    else:
        run_job(cfg, args.expert, args.subjects, args.shard)
    return 0


def route(args: argparse.Namespace) -> int:
    from .config import load_profile
    from .data.benchmarks import read_questions
    from .routing.orchestrator import Orchestrator

    cfg = load_profile(args.profile)
    questions = read_questions(args.questions)
    orchestrator = Orchestrator.load(cfg.require("orchestrator"))
    routes = orchestrator.route(questions, args.budget, pool=args.pool)
    out = questions.assign(expert=routes, cost_per_1m_usd=routes.map(orchestrator.costs))
    if args.output is None:
        out.drop(columns=["question", "choices"]).to_csv(sys.stdout, index=False)
    else:
        write = out.to_json if args.output.suffix == ".jsonl" else out.to_csv
        write(
            args.output,
            **({"orient": "records", "lines": True} if args.output.suffix == ".jsonl" else {"index": False}),
        )
        print(
            f"{len(out)} questions routed to {args.output}, mean price "
            f"{out['cost_per_1m_usd'].mean():.4g} USD per 1M tokens"
        )
    return 0


def cv(args: argparse.Namespace) -> int:
    from .config import load_profile
    from .evaluation.policy_cv import cross_validate

    path = cross_validate(load_profile(args.profile), args.folds, args.goal, args.train_on)
    print(f"written to {path}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from .serving.app import serve as run_service

    run_service(args.profile, args.port)
    return 0


def report(args: argparse.Namespace) -> int:
    from .config import ROOT, load_profile
    from .evaluation.report import fill, pages

    cfg = load_profile(args.profile)
    for page in pages(ROOT):
        text = page.read_text()
        filled = fill(text, cfg.output_root / "results", cfg)
        if args.check and filled != text:
            raise ValueError(f"{page}'s results differ from the files under results/: run `leeroo report`")
        if not args.check:
            page.write_text(filled)
    print(f"README.md and docs/: every result {'matches' if args.check else 'rewritten from'} results/")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="leeroo",
        description="Cost-aware routing of questions to LLM experts (the Leeroo Orchestrator, arXiv 2401.13979).",
        epilog="\n".join(__doc__.splitlines()[2:9]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("check-profile", help="validate profiles (and their endpoints files)")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help=PROFILE_HELP)
    p.set_defaults(run=check_profile)

    p = commands.add_parser(
        "score",
        help="score one live expert of a profile through lm-evaluation-harness",
        description="Score one live expert of a profile through lm-evaluation-harness, into its own resumable "
        "file. Fan out with one job per --shard I/N (a Slurm array, a shell loop), then --merge.",
    )
    p.add_argument("--profile", default=None, help=PROFILE_HELP)
    p.add_argument("--expert", required=True, help="a name in the profile's scoring.live_experts")
    p.add_argument("--subjects", nargs="+", default=None, help="MMLU subjects (default: the profile's)")
    p.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="I/N",
        help="score part I of N of the questions, into data/scores/shards/<expert>/I-of-N.parquet",
    )
    p.add_argument("--merge", action="store_true", help="join the expert's stored shards and exit")
    p.set_defaults(run=score)

    p = commands.add_parser(
        "route",
        help="route questions with the saved orchestrator",
        description="Route a file of questions (CSV or JSONL: question, choices as a list or a JSON list, "
        "optional subject) with the orchestrator notebook 04 saved for the profile: one expert per question, "
        "mean price at most --budget (Eq. 1).",
    )
    p.add_argument("--profile", default=None, help=PROFILE_HELP)
    p.add_argument("--questions", type=Path, required=True, help="a .csv or .jsonl file of questions")
    p.add_argument("--budget", type=float, required=True, help="mean USD per 1M tokens per question")
    p.add_argument(
        "--pool",
        default=None,
        help="route over one pool's served experts (needed where the orchestrator routes "
        "several benchmarks; default: all its experts)",
    )
    p.add_argument("--output", type=Path, default=None, help="write .csv or .jsonl here (default: CSV on stdout)")
    p.set_defaults(run=route)

    p = commands.add_parser(
        "serve", help="the orchestrator as an OpenAI-compatible service on the profile's expert endpoints"
    )
    p.add_argument("--profile", default=None, help=PROFILE_HELP)
    p.add_argument("--port", type=int, default=None, help="port of the service (default: the endpoints file's)")
    p.set_defaults(run=serve)

    p = commands.add_parser(
        "cv",
        help="cross-validate the cheap policies inside the training split (how the saved orchestrator's are chosen)",
        description="5-fold cross-validation inside the training split of one of the profile's goals: each cheap "
        "policy's per-question signal and its accuracy at the goal's budget against the reference; the test "
        "split is never read. Reads what notebooks 01-03 wrote; writes results/bench_policy_cv_<pool>_<budget>_"
        "<training set>.csv.",
    )
    p.add_argument("--profile", default=None, help=PROFILE_HELP)
    p.add_argument("--folds", type=int, default=5, help="folds, grouped by question text (default 5)")
    p.add_argument("--goal", type=int, default=0, help="which of the profile's evaluation.goals (default: the first)")
    p.add_argument(
        "--train-on", choices=["full", "selfplay"], default=None, help="the training set (default: the profile's)"
    )
    p.set_defaults(run=cv)

    p = commands.add_parser("report", help="rewrite the README's and docs/'s results from the files under results/")
    p.add_argument("--profile", default=None, help=PROFILE_HELP)
    p.add_argument("--check", action="store_true", help="only check that they match; exit 2 where not")
    p.set_defaults(run=report)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "score" and args.merge and (args.shard or args.subjects):
        parser().error("score --merge takes only --profile and --expert")
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"leeroo {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
