"""Speed of the greedy universe constructor: 1,000 experts x 14,042 questions, k = 20.

Prints the numpy time (target: under 2 s on 2 cores) and its ratio to a plain pandas loop that
scores every candidate column by column. The pandas loop runs a few steps and is extrapolated to
k = 20 (every step of it costs the same: one pass over all columns). Written to ``results/bench_universe.csv`` too.
"""

import time

import numpy as np
import pandas as pd

from leeroo_lib.config import ROOT
from leeroo_lib.routing.universe import greedy_universe

N_QUESTIONS, N_EXPERTS, K = 14_042, 1_000, 20
P_CORRECT = 0.1  # low enough that 20 random-like experts leave questions uncovered: all 20 steps run
PANDAS_STEPS = 2
SEED = 0


def random_scores(values) -> pd.DataFrame:
    return pd.DataFrame(values, columns=[f"expert_{j}" for j in range(N_EXPERTS)])


def best_of(n_runs, fn):
    times, result = [], None
    for _ in range(n_runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def pandas_greedy(scores: pd.DataFrame, k: int) -> list[tuple[str, float]]:
    """Algorithm 1 written as a plain loop over pandas columns."""
    best = pd.Series(0.0, index=scores.index)
    steps = []
    for _ in range(k):
        s_with = {col: scores[col].clip(lower=best).mean() for col in scores.columns}
        col = max(s_with, key=s_with.get)
        best = scores[col].clip(lower=best)
        steps.append((col, s_with[col]))
    return steps


def main():
    rng = np.random.default_rng(SEED)
    binary = random_scores((rng.random((N_QUESTIONS, N_EXPERTS)) < P_CORRECT).astype(float))
    fractional = random_scores(rng.random((N_QUESTIONS, N_EXPERTS)))

    print(f"greedy universe, {N_EXPERTS:,} experts x {N_QUESTIONS:,} questions, k={K} (best of 3)")
    t_numpy, steps = best_of(3, lambda: greedy_universe(binary, K))
    print(
        f"  numpy, 0/1 scores (p={P_CORRECT}, seed {SEED}): {t_numpy:.3f} s, {len(steps)} steps, "
        f"S={steps[-1][1]:.4f}  [target < 2 s on 2 cores]"
    )
    t_frac, frac_steps = best_of(3, lambda: greedy_universe(fractional, K))
    print(f"  numpy, scores uniform in [0, 1] (no question ever settled): {t_frac:.3f} s, {len(frac_steps)} steps")

    t_pandas, pandas_steps = best_of(1, lambda: pandas_greedy(binary, PANDAS_STEPS))
    t_pandas_k = t_pandas / PANDAS_STEPS * K
    same = [e for e, _ in pandas_steps] == [e for e, _ in steps[:PANDAS_STEPS]]
    print(
        f"  plain pandas loop: {t_pandas:.2f} s for {PANDAS_STEPS} steps, extrapolated to k={K}: "
        f"{t_pandas_k:.1f} s (same first {PANDAS_STEPS} experts as numpy: {same})"
    )
    print(f"  ratio pandas / numpy at k={K}: {t_pandas_k / t_numpy:.0f}x")
    row = {
        "experts": N_EXPERTS,
        "questions": N_QUESTIONS,
        "k": K,
        "numpy_binary_s": t_numpy,
        "numpy_fractional_s": t_frac,
        "pandas_extrapolated_s": t_pandas_k,
        "ratio_pandas_numpy": t_pandas_k / t_numpy,
        "same_first_experts": same,
    }
    pd.DataFrame([row]).to_csv(ROOT / "results" / "bench_universe.csv", index=False)


if __name__ == "__main__":
    main()
