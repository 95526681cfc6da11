"""The weight-matching baseline table: loss barriers of naive / wm / signed-or-scale matching.

    python -m experiments.merge_barriers.study --zoo zoo/digits-inr --zoo zoo/digits-cnn --split test \\
        --pairs 100 --out results/merge-study

For every zoo, every activation in it, and every pair type (the activation's orbit symmetries from
`weightspace.registry` — P/D/PD with sign symmetry, P/S/PS with positive-scale symmetry — with
Gaussian noise σ; independent pairs), the interpolation curves of `naive`, `wm` and the activation's
matching variant (registry: `wm-signed`, `wm-scale`) on 25 λ points,
and the barrier (max − mean of endpoints) on the task loss: INR — MSE of the rendering against the
target image (against the first endpoint's rendering when the zoo has no targets); CNN —
cross-entropy on the held-out task images (the accuracy barrier, mean(endpoints) − min, is
reported too). Writes `results.csv` (one row per zoo/activation/pair type (column `kind`)/method, every barrier metric,
mean/std/median), `results.md` (the mean ± std table) and prints the table.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch


def _stats(v: torch.Tensor) -> dict[str, float]:
    v = v.double()
    return {"mean": float(v.mean()), "std": float(v.std()) if len(v) > 1 else 0.0, "median": float(v.median())}


def study_zoo(zoo, split: str, n_pairs: int, seed: int, sigma: float, points: int, max_iter: int,
              activations: list[str] | None = None, data_root: str | None = None, log=print) -> list[dict]:
    from gmnae.merge.barriers import barrier_metrics
    from gmnae.merge.interpolation import lambda_grid, method_path, zoo_evaluator
    from gmnae.merge.matching import default_method
    from gmnae.merge.pairs import SplitNetworks, evaluation_pair_types, split_pairs

    networks = SplitNetworks.read(zoo, split)  # once for every activation and pair type
    acts = activations or sorted(set(zoo.activations(split)))
    lam = lambda_grid(points)
    rows = []
    for act in acts:
        methods = list(dict.fromkeys(["naive", "wm", default_method(act)]))
        for pair_type in evaluation_pair_types(act):
            ps = split_pairs(networks, pair_type, n_pairs=n_pairs, seed=seed, sigma=sigma,
                             activation=act if zoo.arch.activation == "mixed" else None)
            if len(ps) == 0:
                continue
            if len(ps) < n_pairs:
                log(f"  note: {zoo.name}/{split} has only {len(ps)} {pair_type} pairs of {act} networks")
            ev = zoo_evaluator(zoo, split, ps.index_a, activation=act, data_root=data_root, meta=networks.meta)
            for method in methods:
                t0 = time.perf_counter()
                path = method_path(ps.arch, ps.a, ps.b, method, lam, max_iter=max_iter, seed=seed)
                t_match = time.perf_counter() - t0
                curves = ev(path)
                row = {"zoo": zoo.name, "activation": act, "kind": pair_type, "method": method, "pairs": len(ps),
                       "metric": ev.primary, "match_seconds": t_match}
                for name, v in barrier_metrics(curves[ev.primary], lam).items():
                    row.update({f"{name}_{k}": x for k, x in _stats(v).items()})
                if "accuracy" in curves:
                    acc = barrier_metrics(curves["accuracy"], lam, higher_is_better=True)
                    row.update({f"acc_barrier_{k}": x for k, x in _stats(acc["barrier"]).items()})
                    row.update({f"acc_min_{k}": x for k, x in _stats(acc["min"]).items()})
                rows.append(row)
                log(f"  {zoo.name:>12} {act:>5} {pair_type:>12} {method:>9}: barrier {row['barrier_mean']:.4f} "
                    f"± {row['barrier_std']:.4f}  ({len(ps)} pairs, matching {t_match:.2f}s)")
    return rows


def markdown_table(rows: list[dict]) -> str:
    """Barrier mean ± std: one line per zoo/activation/pair type, one column per method."""
    methods = ["naive", "wm", "wm-signed", "wm-scale"]
    present = [m for m in methods if any(r["method"] == m for r in rows)]
    lines = ["| zoo | activation | loss | pairs | pair type | " + " | ".join(present) + " |",
             "|---|---|---|---|---|" + "---|" * len(present)]
    keys = list(dict.fromkeys((r["zoo"], r["activation"], r["kind"]) for r in rows))
    for key in keys:
        rs = {r["method"]: r for r in rows if (r["zoo"], r["activation"], r["kind"]) == key}
        first = next(iter(rs.values()))
        cells = [f"{rs[m]['barrier_mean']:.4f} ± {rs[m]['barrier_std']:.4f}" if m in rs else "—" for m in present]
        lines.append(f"| {key[0]} | {key[1]} | {first['metric']} | {first['pairs']} | {key[2]} | " + " | ".join(cells) + " |")
    acc_rows = [r for r in rows if "acc_barrier_mean" in r]
    if acc_rows:
        lines += ["", "Accuracy barrier (mean of endpoint accuracies − min along the path), mean ± std:", "",
                  "| zoo | activation | pair type | " + " | ".join(present) + " |", "|---|---|---|" + "---|" * len(present)]
        for key in list(dict.fromkeys((r["zoo"], r["activation"], r["kind"]) for r in acc_rows)):
            rs = {r["method"]: r for r in acc_rows if (r["zoo"], r["activation"], r["kind"]) == key}
            cells = [f"{rs[m]['acc_barrier_mean']:.4f} ± {rs[m]['acc_barrier_std']:.4f}" if m in rs else "—"
                     for m in present]
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from gmnae.errors import GmnaeError
    from gmnae.zoo import Zoo

    p = argparse.ArgumentParser(prog="python -m experiments.merge_barriers.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--zoo", action="append", required=True, help="zoo folder (repeat for several)")
    p.add_argument("--split", default="test", help="zoo split the pairs come from (default test)")
    p.add_argument("--pairs", type=int, default=100, help="pairs per pair type (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=0.005, help="noise of orbit pairs (default 0.005)")
    p.add_argument("--points", type=int, default=25, help="λ points (default 25)")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--activation", action="append", help="only these activations (repeatable)")
    p.add_argument("--data-root", help="task image data (CIFAR-10 zoos)")
    p.add_argument("--out", help="folder for results.csv / results.md / results.json")
    args = p.parse_args(argv)
    try:
        rows = []
        t0 = time.perf_counter()
        for path in args.zoo:
            zoo = Zoo(path)
            print(f"== {zoo.name} ({path}, split {args.split})", flush=True)
            rows += study_zoo(zoo, args.split, args.pairs, args.seed, args.sigma, args.points, args.max_iter,
                              args.activation, args.data_root, log=lambda s: print(s, flush=True))
    except GmnaeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = markdown_table(rows)
    header = (f"Loss barrier (max − mean of endpoints) over {args.points} λ points, mean ± std over pairs; "
              f"split {args.split}, seed {args.seed}, orbit noise σ = {args.sigma:g}; "
              f"{time.perf_counter() - t0:.0f}s in all.\n\n")
    print("\n" + header + table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(header + table + "\n")
        (out / "results.json").write_text(json.dumps(rows, indent=1))
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with open(out / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {out}/results.{{md,csv,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
