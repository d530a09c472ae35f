"""The README's two commands as a new user meets them: clone this repository into a fresh folder (nothing cached:
no .venv, no data/scores, no models), run each command there, and write its wall time, exit status and pytest's
summary to ``results/bench_fresh_clone.csv``. The fresh folder is removed afterwards.

    python benchmarks/fresh_clone.py                   # make test
    python benchmarks/fresh_clone.py test reproduce    # both (reproduce: about half an hour on 2 cores)
"""

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from leeroo_lib.config import ROOT

OUT = ROOT / "results" / "bench_fresh_clone.csv"
TIMEOUT_S = 60 * 60  # a command that runs longer is stopped and counted as failed


def run_fresh(target: str, clone: Path) -> dict:
    """``make <target>`` in ``clone``, timed; pytest's last summary line where it printed one."""
    start = time.perf_counter()
    try:
        done = subprocess.run(["make", target], cwd=clone, capture_output=True, text=True, timeout=TIMEOUT_S)
        code, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        code, output = "timeout", str(expired.stdout or "")
    seconds = time.perf_counter() - start
    summary = re.findall(r"=+ (\d+ passed.*?) in [\d.]+s", output)
    return {
        "command": f"make {target}",
        "wall_s": round(seconds, 1),
        "wall_min": round(seconds / 60, 1),
        "exit_code": code,
        "summary": summary[-1] if summary else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", default=["test"], choices=["test", "reproduce"])
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / ROOT.name
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        for target in args.targets:
            rows.append(run_fresh(target, clone) | {"commit": commit.stdout.strip()})
            print(rows[-1])
        shutil.rmtree(clone, ignore_errors=True)
    previous = pd.read_csv(OUT) if OUT.exists() else pd.DataFrame(columns=list(rows[0]))
    kept = previous[~previous["command"].isin([r["command"] for r in rows])]
    pd.concat([kept, pd.DataFrame(rows)], ignore_index=True).to_csv(OUT, index=False)


if __name__ == "__main__":
    main()
