"""Run one study of experiments/: its runs, then its table commands, into one results file.

A study's `config.yaml`:

    title: Downstream tasks                 # heading of the results file
    doc: docs/results/downstream.md         # where the measured tables are documented
    seeds: [0, 1, 2]                        # {seed} in a command expands over these (--seeds overrides)
    tables:
      inr-classification:                   # --only picks tables by these names
        title: INR classification, mnist5k-inr
        runs:                               # produce what the table reads; output goes to logs/
          - cmd: gmnae train task=classify dataset=mnist5k-inr seed={seed} run_name=x-s{seed}
            creates: runs/x-s{seed}         # skipped when this path exists (a rerun resumes the study)
        table:                              # their standard output is the table, copied into results.md
          - gmnae report runs/x-s0 runs/x-s1 runs/x-s2
        note: text written under the table (what the documented table adds by hand, if anything)

A command is a string (or `cmd:` with `creates:`); `gmnae …` runs `python -m gmnae …` and `python …`
runs this interpreter, both from the repository root. `{seed}` expands a command once per seed, `{out}` is
the results folder. Every results file records the commit, the machine's load before and after, and the
seeds.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = Path(__file__).resolve().parent


@dataclass
class Command:
    argv: list[str]
    creates: str | None = None

    @property
    def text(self) -> str:
        return shlex.join(["python" if a == sys.executable else a for a in self.argv])


def studies() -> list[str]:
    """Every folder of experiments/ with a config.yaml, sorted."""
    return sorted(p.parent.name for p in EXPERIMENTS.glob("*/config.yaml"))


def load_config(study: str) -> dict:
    path = EXPERIMENTS / study / "config.yaml"
    if not path.is_file():
        raise SystemExit(f"no study {study!r}: pick one of {', '.join(studies())}")
    cfg = yaml.safe_load(path.read_text())
    for key in ("title", "doc", "tables"):
        if key not in cfg:
            raise SystemExit(f"{path}: missing key {key!r}")
    return cfg


def _argv(text: str) -> list[str]:
    argv = shlex.split(text)
    if argv[0] == "gmnae":
        return [sys.executable, "-m", "gmnae", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def expand(items: list, seeds: list[int], out: Path) -> list[Command]:
    """Commands of a `runs:` or `table:` list, each {seed} command once per seed."""
    cmds = []
    for item in items or []:
        text, creates = (item["cmd"], item.get("creates")) if isinstance(item, dict) else (item, None)
        for seed in (seeds if "{seed}" in text else [None]):
            fill = {"seed": seed, "out": str(out)}
            cmds.append(Command(_argv(text.format(**fill)), creates.format(**fill) if creates else None))
    return cmds


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "not recorded (no git checkout)"


def _load() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg()) + f" (1/5/15 min, {os.cpu_count()} CPUs)"
    except OSError:
        return "not available"


def run_study(study: str, argv: list[str] | None = None) -> int:
    cfg = load_config(study)
    p = argparse.ArgumentParser(prog=f"python -m experiments.{study}", description=cfg["title"])
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--only", action="append", choices=list(cfg["tables"]), help="only this table (repeatable)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the config's)")
    p.add_argument("--out", help=f"results folder (default runs/experiments/{study})")
    args = p.parse_args(argv)
    cli_seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    seeds = cli_seeds or list(cfg.get("seeds", [0]))

    def table_seeds(t: dict) -> list[int]:  # a table may fix its own seeds; --seeds overrides both
        return cli_seeds or list(t.get("seeds", seeds))

    out = Path(args.out) if args.out else ROOT / "runs" / "experiments" / study
    names = args.only or list(cfg["tables"])

    if args.dry_run:
        print(f"# {cfg['title']} (seeds {seeds}; documented in {cfg['doc']})")
        for name in names:
            t = cfg["tables"][name]
            print(f"\n## {name}: {t.get('title', name)}")
            for c in expand(t.get("runs"), table_seeds(t), out):
                print(c.text + (f"    # skipped if {c.creates} exists" if c.creates else ""))
            for c in expand(t.get("table"), table_seeds(t), out):
                print(c.text + "    # -> results.md")
        return 0

    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    load_before, started = _load(), time.strftime("%Y-%m-%d %H:%M")
    sections, n = [], 0
    for name in names:
        t = cfg["tables"][name]
        for c in expand(t.get("runs"), table_seeds(t), out):
            if c.creates and (ROOT / c.creates).exists():
                print(f"[{name}] skip (exists: {c.creates}): {c.text}", flush=True)
                continue
            n += 1
            log = logs / f"{n:02d}-{name}.log"
            print(f"[{name}] {c.text}  (log: {log})", flush=True)
            with open(log, "w") as f:
                rc = subprocess.run(c.argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                print(f"[{name}] failed (exit {rc}); see {log}", file=sys.stderr)
                return rc
        outputs = []
        for c in expand(t.get("table"), table_seeds(t), out):
            print(f"[{name}] {c.text}", flush=True)
            proc = subprocess.run(c.argv, cwd=ROOT, capture_output=True, text=True)
            n += 1
            (logs / f"{n:02d}-{name}.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                print(f"[{name}] failed (exit {proc.returncode})", file=sys.stderr)
                return proc.returncode
            print(proc.stdout, flush=True)
            outputs.append(f"```bash\n{c.text}\n```\n\n" + (proc.stdout.strip() if t.get("markdown")
                                                            else f"```\n{proc.stdout.strip()}\n```"))
        sections.append(f"## {t.get('title', name)}\n\nSeeds {', '.join(map(str, table_seeds(t)))}.\n\n"
                        + "\n\n".join(outputs)
                        + (f"\n\n{t['note'].strip()}" if t.get("note") else ""))
    header = (f"# {cfg['title']}\n\nRegenerated by `python -m experiments.{study}` on {started}; commit "
              f"{_commit()}; seeds {', '.join(map(str, seeds))}; load before {load_before}, after {_load()}. "
              f"The documented tables: {cfg['doc']}.\n")
    (out / "results.md").write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {out / 'results.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m experiments`: list the studies; `python -m experiments NAME …`: run one."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "list"):
        for s in studies():
            cfg = load_config(s)
            print(f"{s:24} {cfg['title']}  ({cfg['doc']})")
        return 0
    return run_study(argv[0], argv[1:])
