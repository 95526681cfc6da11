"""Weight-matching throughput: `python -m benchmarks --only merge` (add `--quick` for a small run).

Pairs are *independent* pairs of trained networks (the real merging problem; orbit pairs converge
faster): two SIRENs of one image from different seeds, and two ReLU CNNs. The networks come from
`zoo/digits-inr` and `zoo/digits-cnn` when those exist (another folder holding both:
`GMNAE_BENCH_ZOO_ROOT=DIR`), else small zoos are trained on the spot.
The CNN figures use the CIFAR-10 Small CNN architecture (`Architecture.small_cnn("relu")`, 4,970
parameters): the digits CNNs have exactly its tensor shapes (only the padding differs, which
matching never looks at).

Measured in the same run:
- `single`: the one-pair-at-a-time algorithm written the way the public PyTorch port of Git
  Re-Basin works (`weight_matching_reference`: a permutation spec of named axes, torch ops per
  tensor, scipy's `linear_sum_assignment` per step). It runs with torch's default thread count and
  with one thread; the faster is the baseline (`single.pairs_per_s`). Baseline and batched matcher
  alternate (best of 3 rounds each), so a busy spell of a shared machine hits both alike.
- `batched`: `match_weights` on a batch of pairs with its defaults, i.e. what a user gets: the `auto`
  solver (`batched.auto_solver`: the one the matcher measured fastest on this machine,
  `assignment.choose_solver`), with the lapx solvers on the cores the machine's load leaves free
  (`matching._free_cpus`); `batched.solver_threads1` keeps them on one.
- `batched.<solver>`: the same with each exact solver fixed, measured round-robin with `auto`
  (`batched.<solver>.over_single.ratio` beside `batched_over_single.ratio`); `batched.jv` warm-starts
  each re-solve from the last duals (the matcher's default), `batched.jv_cold` does not;
  `batched.auto_over_fastest_fixed.ratio`: auto / the fastest fixed solver (1.0: the right choice).
- `loadavg_1min`: the machine's load before and after the section (the larger), beside the ratios.
- `batched_over_single.ratio` = batched / single.
- `<variant>`: the signed (SIREN) or scale-aware (CNN) matcher, batched.
- With a CUDA device: `cuda.batched` (auto solver: host solvers or the batched torch Hungarian on
  the device) and `cuda.torch_hungarian`.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

_TMP: dict[str, Path] = {}


def _zoo(name: str, quick: bool):
    from gmnae.zoo import Zoo
    from gmnae.zoo.forge import build_zoo

    local = Path(os.environ.get("GMNAE_BENCH_ZOO_ROOT", "zoo")) / name
    if (local / "manifest.json").exists():
        return Zoo(local)
    if name not in _TMP:
        out = Path(tempfile.mkdtemp(prefix="gmnae-bench-merge-")) / name
        t0 = time.perf_counter()
        if name == "digits-inr":
            build_zoo(name, out, progress=False, size=48 if quick else 96, seeds=2, steps=150, block_size=96)
        else:
            build_zoo(name, out, progress=False, size=96 if quick else 192, steps=200, block_size=96,
                      activations=("relu",))
        print(f"  (no zoo/{name}: trained a small one in {time.perf_counter() - t0:.0f}s)", flush=True)
        _TMP[name] = out
    return Zoo(_TMP[name])


def _pairs(family: str, quick: bool):
    from gmnae.merge.pairs import zoo_pairs
    from gmnae.weightspace import Architecture

    if family == "siren":
        zoo = _zoo("digits-inr", quick)
        ps = zoo_pairs(zoo, "train", "independent", n_pairs=None)
        return ps.arch, ps.a, ps.b
    zoo = _zoo("digits-cnn", quick)
    act = "relu" if zoo.arch.activation == "mixed" else None
    ps = zoo_pairs(zoo, "train", "independent", n_pairs=None, activation=act)
    return Architecture.small_cnn("relu"), ps.a, ps.b


def _tile(t: torch.Tensor, n: int) -> torch.Tensor:
    reps = -(-n // len(t))
    return t.repeat(reps, 1)[:n].contiguous()


def _single_rate(arch, a, b, n: int, threads: int) -> float:
    from gmnae.merge.reference_matching import weight_matching_reference

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        weight_matching_reference(arch, a[0], b[0])  # warm-up
        t0 = time.perf_counter()
        for k in range(n):
            weight_matching_reference(arch, a[k % len(a)], b[k % len(b)], seed=k)
        return n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)


def _batched_rate(arch, a, b, repeat: int, **kw) -> tuple[float, str]:
    from gmnae.merge.matching import match_weights

    match_weights(arch, a[:16], b[:16], **kw)  # warm-up (and the solver choice of "auto")
    best, solver = float("inf"), ""
    for _ in range(repeat):
        if a.is_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = match_weights(arch, a, b, **kw)
        if a.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        solver = res.solver
    return len(a) / best, solver


def run(quick: bool) -> dict[str, float]:
    from gmnae.merge.assignment import available_solvers

    out: dict[str, float] = {}
    load0 = os.getloadavg()[0]
    n_single = 30 if quick else 200
    n_batch = 512 if quick else 4096
    repeat = 1 if quick else 3
    default_threads = torch.get_num_threads()
    for family, variant in (("siren", "wm-signed"), ("cnn", "wm-scale")):
        arch, a, b = _pairs(family, quick)
        a64, b64 = a.float(), b.float()
        key = f"merge.{family}"
        out[f"{key}.distinct_pairs"] = float(len(a))
        A, B = _tile(a64, n_batch), _tile(b64, n_batch)
        out[f"{key}.batch_size"] = float(n_batch)
        # The baseline and the batched matcher alternate, best of `repeat` rounds each, so that a
        # busy spell of a shared machine does not land on one side only.
        singles: dict[int, float] = {}
        rate, chosen = 0.0, ""
        for _ in range(repeat):
            for t in sorted({1, default_threads}):
                singles[t] = max(singles.get(t, 0.0), _single_rate(arch, a64, b64, n_single, t))
            r, chosen = _batched_rate(arch, A, B, 1, method="wm")
            rate = max(rate, r)
        for t, r in singles.items():
            out[f"{key}.single.threads{t}.pairs_per_s"] = r
        single = max(singles.values())
        out[f"{key}.single.pairs_per_s"] = single
        # Every exact solver beside the default (`auto`, which the user gets): round-robin, best of
        # `repeat` rounds each, so that the ratios compare like with like on a shared machine.
        fixed = [s for s in available_solvers() if s != "torch"]  # torch: O(n^2) small kernels, GPU only (below)
        # jv warm-starts each re-solve from the layer's last duals (the default); `jv_cold` solves every time afresh
        variants = {s: {"solver": s} for s in ["auto", *fixed]}
        if "jv" in fixed:
            variants["jv_cold"] = {"solver": "jv", "warm_start": False}
        rates = {s: 0.0 for s in variants}
        for _ in range(repeat):
            for solver, kw in variants.items():
                r, got = _batched_rate(arch, A, B, 1, method="wm", **kw)
                rates[solver] = max(rates[solver], r)
                chosen = got if solver == "auto" else chosen
        auto_rr = rates.pop("auto")
        rate = max(rate, auto_rr)
        print(f"  {family}: auto solver -> {chosen}", flush=True)
        out[f"{key}.batched.auto_solver"] = chosen
        out[f"{key}.batched.pairs_per_s"] = rate
        out[f"{key}.batched_over_single.ratio"] = rate / single
        for solver, r in rates.items():
            out[f"{key}.batched.{solver}.pairs_per_s"] = r
            out[f"{key}.batched.{solver}.over_single.ratio"] = r / single
        best_fixed = max(rates, key=rates.get)
        out[f"{key}.batched.auto_over_fastest_fixed.ratio"] = auto_rr / rates[best_fixed]  # same rounds
        print(f"  {family}: auto {rate / single:.1f}x the one-pair port; fastest fixed solver {best_fixed} "
              f"{rates[best_fixed] / single:.1f}x", flush=True)
        rate1, _ = _batched_rate(arch, A, B, repeat, method="wm", solver_threads=1)
        out[f"{key}.batched.solver_threads1.pairs_per_s"] = rate1
        vrate, _ = _batched_rate(arch, A, B, repeat, method=variant)
        out[f"{key}.{variant}.batched.pairs_per_s"] = vrate
        out[f"{key}.{variant}.batched_over_single.ratio"] = vrate / single
        if torch.cuda.is_available():
            Ac, Bc = A.cuda(), B.cuda()
            rate, chosen = _batched_rate(arch, Ac, Bc, repeat, method="wm")
            print(f"  {family}: cuda auto solver -> {chosen}", flush=True)
            out[f"{key}.cuda.batched.pairs_per_s"] = rate
            out[f"{key}.cuda.batched_over_single.ratio"] = rate / single
            rate, _ = _batched_rate(arch, Ac, Bc, repeat, method="wm", solver="torch")
            out[f"{key}.cuda.torch_hungarian.pairs_per_s"] = rate
    out["merge.loadavg_1min"] = max(load0, os.getloadavg()[0])
    return out
