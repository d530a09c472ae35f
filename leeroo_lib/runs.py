"""How `make reproduce` runs the notebooks and what it keeps of the runs: each notebook through papermill with its
wall time and peak memory recorded (``run``), the timings of a whole run as ``results/bench_reproduce.csv``
(``report``), and the executed notebooks of a run as HTML pages to read without running (``publish``, into
``docs/notebooks/``; the notebooks themselves are committed with outputs cleared)::

    python -m leeroo_lib.runs run notebooks/04_policy.ipynb runs/cpu/notebooks/04_policy.ipynb cpu
    python -m leeroo_lib.runs report runs/cpu/notebooks results/bench_reproduce.csv
    python -m leeroo_lib.runs publish runs/cpu/notebooks docs/notebooks
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import nbformat
import pandas as pd

TIMING_SUFFIX = ".timing.json"
SLOWEST_CELLS = 3
MAX_STREAM_LINES = 20  # a published cell keeps the last lines of what it printed: no walls of progress bars
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a live widget: nothing to show without a kernel


def run(source: Path, executed: Path, profile: str) -> dict:
    """Execute ``source`` into ``executed`` with papermill (``-p profile``, in notebooks/), and write beside it its
    wall time and the peak resident memory of its kernel (the largest process it waited for)."""
    import papermill

    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(str(source), str(executed), parameters={"profile": profile}, cwd=str(source.parent))
    timing = {
        "notebook": source.stem,
        "wall_s": round(time.perf_counter() - start, 1),
        # Linux reports ru_maxrss in KiB
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2),
    }
    executed.with_suffix(TIMING_SUFFIX).write_text(json.dumps(timing))
    return timing


def _slowest(notebook: dict) -> str:
    cells = [
        (cell["metadata"].get("papermill", {}).get("duration") or 0.0, i, cell)
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
    ]
    top = sorted(cells, key=lambda c: -c[0])[:SLOWEST_CELLS]
    return "; ".join(
        f"cell {i} ({seconds:.0f} s): {''.join(cell['source']).splitlines()[0][:60]}" for seconds, i, cell in top
    )


def report(run_dir: Path, out: Path, venv_seconds: Path | None = None) -> pd.DataFrame:
    """``results/bench_reproduce.csv``: per executed notebook of ``run_dir``, its wall time, peak memory and
    slowest cells (papermill's own per-cell durations), the creation of the virtual environment where
    ``venv_seconds`` (a file the Makefile writes) holds it, and a total row."""
    rows = []
    if venv_seconds is not None and venv_seconds.exists():
        rows.append({"notebook": "virtual environment", "wall_s": float(venv_seconds.read_text()), "slowest_cells": ""})
    for timing_file in sorted(run_dir.glob(f"*{TIMING_SUFFIX}")):
        timing = json.loads(timing_file.read_text())
        notebook = json.loads(timing_file.with_suffix("").with_suffix(".ipynb").read_text())
        rows.append(timing | {"slowest_cells": _slowest(notebook)})
    if not any(row["notebook"] != "virtual environment" for row in rows):
        raise FileNotFoundError(f"no notebook timings under {run_dir}: run `make reproduce` first")
    table = pd.DataFrame(rows)
    total = {"notebook": "all", "wall_s": table["wall_s"].sum(), "peak_rss_gb": table["peak_rss_gb"].max()}
    table = pd.concat([table, pd.DataFrame([total | {"slowest_cells": ""}])], ignore_index=True)
    table.insert(2, "wall_min", (table["wall_s"] / 60).round(1))
    table.to_csv(out, index=False)
    return table


def _trimmed(output: dict) -> dict:
    if output["output_type"] == "stream":
        lines = "".join(output["text"]).splitlines()
        if len(lines) > MAX_STREAM_LINES:
            lines = [f"[... {len(lines) - MAX_STREAM_LINES} lines left out]", *lines[-MAX_STREAM_LINES:]]
        output["text"] = "\n".join(lines) + "\n"
    if "data" in output:
        output["data"].pop(WIDGET_VIEW, None)
    return output


def publish(run_dir: Path, docs_dir: Path) -> list[Path]:
    """Each executed notebook of ``run_dir`` as an HTML page (nbconvert) under ``docs_dir``: widget state and live
    widgets left out, long printouts cut to their last lines."""
    from nbconvert import HTMLExporter

    docs_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    written = []
    for path in sorted(run_dir.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        notebook.metadata.pop("widgets", None)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                trimmed = [_trimmed(o) for o in cell.outputs]
                cell.outputs = [o for o in trimmed if "data" not in o or o["data"]]
        page = docs_dir / path.with_suffix(".html").name
        page.write_text(exporter.from_notebook_node(notebook)[0], encoding="utf-8")
        written.append(page)
    return written


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(prog="python -m leeroo_lib.runs", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run", help="execute one notebook and record its time and memory")
    p.add_argument("source", type=Path)
    p.add_argument("executed", type=Path)
    p.add_argument("profile")
    p = commands.add_parser("report", help="results/bench_reproduce.csv from a run's timings")
    p.add_argument("run_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--venv-seconds", type=Path, default=None, help="the file holding the venv's creation time")
    p = commands.add_parser("publish", help="a run's executed notebooks as rendered pages")
    p.add_argument("run_dir", type=Path)
    p.add_argument("docs_dir", type=Path)
    args = top.parse_args(argv)
    if args.command == "run":
        print(run(args.source, args.executed, args.profile))
    elif args.command == "report":
        print(report(args.run_dir, args.out, args.venv_seconds).to_string(index=False))
    else:
        print(f"published {len(publish(args.run_dir, args.docs_dir))} notebooks to {args.docs_dir}")


if __name__ == "__main__":
    main()
