"""The fidelity table of issue 21 from `gmnae evaluate` summaries: one row per variant (runs named <variant>-s<seed>),
mean ± std over seeds of the whole-split fidelity (`gmnae.evaluation.fidelity.zoo_split_fidelity`), the latent-blind decoder
of each run beside it, and the goals.

    python -m experiments.cnn_fidelity.split_table runs/m5c-pure-s0 runs/m5c-pure-s1 ... [--group all] [--split test]
        [--zoo zoo/mnist5k-cnn]    # adds the identity row: decoded = the teacher itself (the ceiling of own − similar)
    python -m experiments.cnn_fidelity.split_table RUNS... --merge   # the independent-pair merge table instead
    python -m experiments.cnn_fidelity.split_table RUNS... --kway evaluate-kway   # K-way table from `gmnae evaluate
        --kway 2,4,8 --out RUN/evaluate-kway` (merged accuracy of K parents, per method)
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from gmnae.merge.methods import current_rows

COLUMNS = [("agreement_own", "agree own"), ("agreement_similar", "agree similar-acc"), ("gap", "own − similar"),
           ("agreement_other", "agree other"), ("kl_own", "KL own"), ("kl_similar", "KL similar"),
           ("accuracy_tau", "τ(acc)"), ("accuracy_abs_delta", "mean abs Δacc"), ("accuracy_decoded", "decoded acc"),
           ("accuracy_teacher", "teacher acc")]


def measures(run: Path, split: str, group: str, who: str) -> dict[str, float]:
    rec = json.loads((run / f"evaluate-{split}" / "summary.json").read_text())["reconstruction"]
    head = f"split {group}:fidelity_{who}"
    m = {k[len(head):]: v for k, v in rec.items() if k.startswith(head) and not k[len(head):].startswith("blind_")}
    if not m:
        raise SystemExit(f"{run}: no '{head}*' in evaluate-{split}/summary.json; run gmnae evaluate on it first")
    m["gap"] = m["agreement_own"] - m["agreement_similar"]
    return m


def identity(zoo_dir: Path, split: str, group: str) -> dict[str, float]:
    """The fidelity measures of a perfect autoencoder (each teacher compared with itself) on the same networks."""
    import torch

    from gmnae.evaluation.fidelity import cnn_fidelity
    from gmnae.tasks.classification import task_images
    from gmnae.zoo.format import Zoo

    zoo = Zoo(zoo_dir)
    params = torch.from_numpy(zoo.read_params(split))
    acts = zoo.activations(split)
    keep = [i for i, a in enumerate(acts) if group in ("all", a)]
    x, y = task_images(zoo.task, "test")
    m = cnn_fidelity(zoo.arch, params[keep], params[keep].clone(), x, y, [acts[i] for i in keep])
    m["gap"] = m["agreement_own"] - m["agreement_similar"]
    return m


def cell(values: list[float]) -> str:
    v = np.array([x for x in values if x == x])
    if not len(v):
        return "–"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def merge_table(runs: list[Path], split: str) -> None:
    """Barrier (test cross-entropy) and endpoint → midpoint accuracy of independent pairs, per variant, activation
    and method: mean ± std over seeds of each run's mean over its pairs."""
    variants: dict[str, list[Path]] = {}
    for run in runs:
        variants.setdefault(re.sub(r"-s\d+$", "", run.name), []).append(run)
    print("| variant | pairs | method | barrier (loss) | endpoint acc | midpoint acc |")
    print("|---|---|---|---|---|---|")
    for name, group in variants.items():
        # each summary.json is one evaluation; an older one's method names (ae, ae-latent) read as today's
        rows = [current_rows(json.loads((r / f"evaluate-{split}" / "summary.json").read_text())["barriers"], by=())
                for r in group]
        kinds = [k for k in dict.fromkeys(row["kind"] for row in rows[0]) if k.endswith("independent")]
        for kind in kinds:
            for method in dict.fromkeys(row["method"] for row in rows[0] if row["kind"] == kind):
                if method == "ae":  # the decoded mean latent: coincides with ae-endpoints to 3 decimals (docs/results/cnn-merge.md)
                    continue
                got = [next(x for x in r if x["kind"] == kind and x["method"] == method) for r in rows]
                print(f"| {name} ({len(group)} seeds) | {kind} × {got[0]['pairs']} | {method} | "
                      f"{cell([g['barrier_mean'] for g in got])} | {cell([g['end_accuracy_mean'] for g in got])} | "
                      f"{cell([g['mid_accuracy_mean'] for g in got])} |")


def kway_table(runs: list[Path], folder: str) -> None:
    """Merged accuracy of K networks per variant, activation and K: mean ± std over seeds of each run's mean over
    its groups, for every method of the K-way section, the parents' own mean and their decodings' beside it."""
    variants: dict[str, list[Path]] = {}
    for run in runs:
        variants.setdefault(re.sub(r"-s\d+$", "", run.name), []).append(run)
    tables = {name: [json.loads((r / folder / "summary.json").read_text())["kway"]["rows"] for r in group]
              for name, group in variants.items()}
    methods = list(dict.fromkeys(row["method"] for rows in next(iter(tables.values())) for row in rows))
    print("| variant | activation | K | parents | " + " | ".join(methods) + " |")
    print("|---|---|---|---|" + "---|" * len(methods))
    for name, per_run in tables.items():
        cells = {}
        for rows in per_run:
            for row in rows:
                got = cells.setdefault((row["activation"], row["k"]), {})
                got.setdefault(row["method"], []).append(row["merged_mean"])
                if row["method"] == methods[0]:  # one parents' mean per group set
                    got.setdefault("parents", []).append(row["parents_mean"])
        for (act, k), got in cells.items():
            print(f"| {name} ({len(per_run)} seeds) | {act} | {k} | {cell(got['parents'])} | "
                  + " | ".join(cell(got.get(m, [])) for m in methods) + " |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--group", default="all", help="all (mixed zoo), relu or tanh")
    p.add_argument("--zoo", type=Path, help="the zoo: adds the identity row (each teacher as its own decoding)")
    p.add_argument("--merge", action="store_true", help="the merge table of the independent pairs instead")
    p.add_argument("--kway", metavar="FOLDER", help="the K-way table from each run's FOLDER/summary.json instead")
    args = p.parse_args(argv)
    if args.kway:
        return kway_table(args.runs, args.kway)
    if args.merge:
        return merge_table(args.runs, args.split)
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
    if args.zoo:
        m = identity(args.zoo, args.split, args.group)
        print("| identity (decoded = the teacher): the ceiling | – | " + " | ".join(
            cell([m.get(k, float("nan"))]) for k, _ in COLUMNS) + " |")
    print("| goal (issue 21) | | ≥ 0.90 | | ≥ 0.10 | | | | ≥ 0.80 | ≤ 0.05 | | |")


if __name__ == "__main__":
    main()
