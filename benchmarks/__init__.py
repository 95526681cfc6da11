"""`python -m benchmarks` / `make bench`: every speed figure of the project, measured in one run.

Each section is a module here with `run(quick: bool) -> dict[str, float]`. Keys are dotted names
(`encoder.inr.dense.cpu.networks_per_s`); a figure that compares against a baseline measured in the
same run ends in `.ratio` (or `_x`). Results are printed and written to `bench/results.json`
(merged with what is there, so a section can be rerun alone: `python -m benchmarks --only encoder`).
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

SECTIONS = ("forge", "zoo_io", "encoder", "training", "shared_cpu", "datamodule", "merge", "importer",
            "published", "roofline", "fused")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--out", default="bench/results.json")
    p.add_argument("--reference", help="a checkout of the published ScaleGMN code for the `published` section "
                   "(default: $GMNAE_SCALEGMN_REFERENCE; without one the section is skipped)")
    p.add_argument("--pyg", help="a folder holding torch_geometric for the reference (default: $GMNAE_PYG_PATH)")


def run(args) -> int:
    import torch

    import os

    if getattr(args, "reference", None):
        os.environ["GMNAE_SCALEGMN_REFERENCE"] = str(Path(args.reference).resolve())
    if getattr(args, "pyg", None):
        os.environ["GMNAE_PYG_PATH"] = str(Path(args.pyg).resolve())
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["meta"] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                       "machine": platform.machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in args.only or SECTIONS:
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"benchmarks.{name}":
                continue
            raise
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        figures = mod.run(quick=args.quick)
        for key, value in figures.items():
            print(f"  {key:<60} {value:>12.4g}" if isinstance(value, (int, float)) else f"  {key:<60} {value}")
        results[name] = figures
        print(f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0
