"""The fidelity table of issue 21 from `gmnae evaluate` summaries: one row per variant (runs named <variant>-s<seed>),
mean ± std over seeds of the whole-split fidelity (`gmnae.fidelity.zoo_split_fidelity`), the latent-blind decoder
of each run beside it, and the goals.

    python -m experiments.cnn_fidelity.split_table runs/m5c-pure-s0 runs/m5c-pure-s1 ... [--group all] [--split test]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

COLUMNS = [("agreement_own", "agree own"), ("agreement_similar", "agree similar-acc"), ("gap", "own − similar"),
           ("agreement_other", "agree other"), ("kl_own", "KL own"), ("kl_similar", "KL similar"),
           ("accuracy_tau", "τ(acc)"), ("accuracy_abs_delta", "mean |Δacc|"), ("accuracy_decoded", "decoded acc"),
           ("accuracy_teacher", "teacher acc")]


def measures(run: Path, split: str, group: str, who: str) -> dict[str, float]:
    rec = json.loads((run / f"evaluate-{split}" / "summary.json").read_text())["reconstruction"]
    head = f"split {group}:fidelity_{who}"
    m = {k[len(head):]: v for k, v in rec.items() if k.startswith(head) and not k[len(head):].startswith("blind_")}
    if not m:
        raise SystemExit(f"{run}: no '{head}*' in evaluate-{split}/summary.json; run gmnae evaluate on it first")
    m["gap"] = m["agreement_own"] - m["agreement_similar"]
    return m


def cell(values: list[float]) -> str:
    v = np.array([x for x in values if x == x])
    if not len(v):
        return "–"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--group", default="all", help="all (mixed zoo), relu or tanh")
    args = p.parse_args(argv)
    variants: dict[str, list[Path]] = {}
    for run in args.runs:
        variants.setdefault(re.sub(r"-s\d+$", "", run.name), []).append(run)
    print("| variant | seeds | " + " | ".join(label for _, label in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, runs in variants.items():
        for who, label in (("", name), ("blind_", f"{name}: its latent-blind decoder")):
            rows = [measures(r, args.split, args.group, who) for r in runs]
            print(f"| {label} | {len(runs)} | " + " | ".join(cell([m.get(k, float('nan')) for m in rows])
                                                          for k, _ in COLUMNS) + " |")
    print("| goal (issue 21) | | ≥ 0.90 | | ≥ 0.10 | | | | ≥ 0.80 | ≤ 0.05 | | |")


if __name__ == "__main__":
    main()
