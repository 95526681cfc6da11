"""`gmnae report RUN…`: one table of runs' final metrics, mean ± std over seeds (gmnae/evaluation/results_table.py).

    gmnae report runs/digits-inr-scalegmn-small-sweep            # a sweep folder (its sweep.json)
    gmnae report runs/cls-s0 runs/cls-s1 runs/cls-s2 --out table.md
    gmnae report runs/                                           # every run folder below runs/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import GmnaeError
from ..evaluation.results_table import aggregate, as_csv, find_runs, group_runs, load_run, markdown


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders, sweep folders (with sweep.json) or folders holding run folders")
    p.add_argument("--out", type=Path, help="also write the table: .md (Markdown) or .csv (means, stds and n)")
    p.add_argument("--metrics", help="comma-separated columns or patterns to show, e.g. 'val/psnr,interp/*/barrier' "
                                     "(default: val/*, test/*, recon/*)")


def run(args) -> int:
    paths, problems = find_runs([Path(p) for p in args.runs])
    runs = []
    for path in paths:
        try:
            runs.append(load_run(path))
        except GmnaeError as e:
            problems.append(str(e))
    for line in problems:
        print(f"gmnae report: skipped {line}", file=sys.stderr)
    if not runs:
        raise GmnaeError("no finished run to tabulate among " + " ".join(args.runs))
    only = [m.strip() for m in args.metrics.split(",")] if args.metrics else None
    columns, table = aggregate(group_runs(runs), only)
    text = markdown(columns, table)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(as_csv(columns, table) if args.out.suffix == ".csv" else text + "\n")
        print(f"table: {args.out}")
    return 0
