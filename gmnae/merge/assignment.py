"""Batched linear assignment (maximisation) for weight matching: the solvers, the timed choice among
them and the optimality certificate that lets matching skip a solve.

Solvers: `scipy` (`linear_sum_assignment`, the reference, always available), the `lapx` batch solvers
when the package is installed, and a batched Hungarian algorithm in torch (`torch`, runs on the
tensors' device). `solver="auto"` times the available ones once per process and problem size and
keeps the fastest (`choose_solver`). `certify_optimal` proves an assignment still optimal (a capped
Bellman-Ford finds no improving cyclic exchange), so that solve can be skipped exactly.
"""
from __future__ import annotations

import time

import numpy as np
import torch

def _lap_module():
    try:
        import lap  # the `lapx` distribution installs the module `lap`

        return lap if hasattr(lap, "lapjvx_batch") else None
    except ImportError:
        return None


def _solve_scipy(cost: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    out = np.empty(cost.shape[:2], dtype=np.int64)
    for k in range(cost.shape[0]):
        out[k] = linear_sum_assignment(cost[k], maximize=True)[1]
    return out


def _lap_batch(name: str, threads: int):
    def solve(cost: np.ndarray) -> np.ndarray:
        c = torch.from_numpy(np.ascontiguousarray(cost))
        return _lap_reduced(name, threads, c, c.amax(dim=2))

    return solve


def _lap_reduced(name: str, threads: int, cost: torch.Tensor, row_max: torch.Tensor) -> np.ndarray:
    """A lapx batch solver on `row_max - cost` (CPU tensors; `row_max` `[B, n]` = cost's row maxima)."""
    lap = _lap_module()
    # Minimise `rowmax - C` rather than `-C`: the same optimal assignments (a constant per row changes
    # every assignment's total alike), but every row starts with a zero, which spares the Jonker-Volgenant
    # solvers part of their reduction phase: ~25% faster on weight-matching costs (benchmarks/README.md).
    # In float64 (exact for float32 costs; the max of converted values is the converted max),
    # in place on the float64 copy: 6x faster than one mixed-dtype subtraction.
    neg = cost.to(torch.float64, copy=True)
    neg = torch.sub(row_max.to(torch.float64).unsqueeze(2), neg, out=neg).numpy()
    kw = {"prefer_float32": False} if name in ("lapjvs_batch",) else {}
    rows, cols = getattr(lap, name)(neg, return_cost=False, n_threads=threads, **kw)
    B, n = cost.shape[:2]
    rows = np.concatenate(rows)
    cols = np.concatenate(cols).astype(np.int64, copy=False).reshape(B, n)
    if (rows.reshape(B, n) == np.arange(n)).all():  # lapjvr/lapjvh: rows come back in order
        return cols
    out = np.empty((B, n), dtype=np.int64)
    np.put_along_axis(out, rows.reshape(B, n).astype(np.int64, copy=False), cols, axis=1)
    return out


def hungarian_torch(cost: torch.Tensor) -> torch.Tensor:
    """Batched exact maximum-weight assignment on the tensor's device: cost `[B, n, n]` -> cols `[B, n]`.

    The shortest-augmenting-path Hungarian algorithm (potentials u, v; e-maxx formulation) with every
    step vectorised over the batch: n augmentations of at most n Dijkstra steps each, so O(n^2) small
    kernels whatever B is. Exact in floating point up to the usual tolerance of dual updates.
    """
    B, n, m = cost.shape
    if n != m:
        raise ValueError("hungarian_torch needs square cost matrices")
    dev = cost.device
    a = -cost.to(torch.float64)  # minimise
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=dev)
    # 1-based arrays as in the classic formulation; column 0 is the virtual start.
    u = torch.zeros(B, n + 1, dtype=torch.float64, device=dev)
    v = torch.zeros(B, n + 1, dtype=torch.float64, device=dev)
    p = torch.zeros(B, n + 1, dtype=torch.long, device=dev)      # p[j]: row matched to column j (0 = none)
    ar = torch.arange(B, device=dev)
    pad = torch.cat([torch.zeros(B, 1, n, dtype=torch.float64, device=dev), a], dim=1)  # rows 1..n
    pad = torch.cat([torch.zeros(B, n + 1, 1, dtype=torch.float64, device=dev), pad], dim=2)
    for i in range(1, n + 1):
        p[:, 0] = i
        j0 = torch.zeros(B, dtype=torch.long, device=dev)
        minv = torch.full((B, n + 1), float("inf"), dtype=torch.float64, device=dev)
        used = torch.zeros(B, n + 1, dtype=torch.bool, device=dev)
        way = torch.zeros(B, n + 1, dtype=torch.long, device=dev)
        active = torch.ones(B, dtype=torch.bool, device=dev)
        while bool(active.any()):
            used[ar, j0] = used[ar, j0] | active
            i0 = p[ar, j0]
            cur = pad[ar, i0] - u[ar, i0].unsqueeze(1) - v  # [B, n+1]
            better = (~used) & (cur < minv) & active.unsqueeze(1)
            minv = torch.where(better, cur, minv)
            way = torch.where(better, j0.unsqueeze(1), way)
            masked = torch.where(used, inf, minv)
            masked[:, 0] = inf
            delta, j1 = masked.min(dim=1)
            delta = torch.where(active, delta, torch.zeros_like(delta))
            # dual update: used columns (and their rows) by +delta / -delta, others' minv by -delta
            du = torch.zeros_like(u)
            du.scatter_add_(1, p, (used.double() * delta.unsqueeze(1)))
            u = u + du
            v = torch.where(used, v - delta.unsqueeze(1), v)
            minv = torch.where(used, minv, minv - delta.unsqueeze(1))
            j0 = torch.where(active, j1, j0)
            active = active & (p[ar, j0] != 0)
        # augment along `way` back to the virtual column 0
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        while not bool(done.all()):
            j1 = way[ar, j0]
            newp = p[ar, j1]
            p[ar, j0] = torch.where(done, p[ar, j0], newp)
            j0 = torch.where(done, j0, j1)
            done = done | (j0 == 0)
    cols = torch.empty(B, n, dtype=torch.long, device=dev)
    rows = p[:, 1:] - 1  # row matched to column j
    cols.scatter_(1, rows, torch.arange(n, device=dev).expand(B, n).contiguous())
    return cols


def _solve_torch(cost: np.ndarray) -> np.ndarray:
    return hungarian_torch(torch.from_numpy(cost)).numpy()


def available_solvers() -> list[str]:
    names = ["scipy", "torch"]
    if _lap_module() is not None:
        names += ["lapjvx", "lapjvs", "lapjvh", "lapjvr"]
    return names


def _solver_fn(name: str, threads: int | None = None):
    if name == "scipy":
        return _solve_scipy
    if name == "torch":
        return _solve_torch
    if name.startswith("lapjv"):
        if _lap_module() is None:
            raise ValueError(f"solver {name!r} needs the lapx package (pip install lapx)")
        return _lap_batch(f"{name}_batch", threads if threads is not None else max(1, torch.get_num_threads()))
    raise ValueError(f"unknown assignment solver {name!r}; available: {', '.join(available_solvers())}")


_CHOSEN: dict[tuple, str] = {}


def _benchmark_problems(n: int, batch: int = 96, seed: int = 0) -> np.ndarray:
    """Matrices like the ones weight matching meets: a correlation structure plus noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n, 4 * n))
    perm = np.argsort(rng.random((batch, n)), axis=1)
    y = np.take_along_axis(x, perm[:, :, None], axis=1) + rng.standard_normal((batch, n, 4 * n)) * 1.5
    return np.einsum("bik,bjk->bij", x, y)


def choose_solver(n: int, on_gpu: bool = False, threads: int | None = None) -> str:
    """The fastest exact solver for n x n problems, measured once per process (scipy among the candidates).

    Candidates: scipy, the lapx batch solvers (with `threads` workers) and, for CUDA tensors, the
    batched torch Hungarian on the device. Timed on 96 matrices shaped like matching costs.
    """
    threads = threads or torch.get_num_threads()
    key = (n, on_gpu, threads)
    if key in _CHOSEN:
        return _CHOSEN[key]
    if on_gpu:
        # Moving a small cost batch to the host and back is cheap next to O(n^2) GPU kernel launches;
        # still, compare the device Hungarian against the host solvers.
        candidates = available_solvers()
    else:
        candidates = [s for s in available_solvers() if s != "torch"]  # slowest on CPU by far
    cost = _benchmark_problems(n)
    best, best_t = "scipy", float("inf")
    for name in candidates:
        fn = _solver_fn(name, threads)
        if name == "torch" and on_gpu:
            def fn(c):  # noqa: E306  the device solver, timed on the device it would run on
                out = hungarian_torch(torch.from_numpy(c).cuda())
                torch.cuda.synchronize()
                return out
        try:
            fn(cost[:4])  # warm-up (imports, thread pools)
            t = []
            for _ in range(2):
                t0 = time.perf_counter()
                fn(cost)
                t.append(time.perf_counter() - t0)
        except Exception:  # a broken optional solver must never break matching
            continue
        if min(t) < best_t:
            best, best_t = name, min(t)
    _CHOSEN[key] = best
    return best


def solve_assignments(cost: torch.Tensor, solver: str = "auto", threads: int | None = None,
                      row_max: torch.Tensor | None = None) -> torch.Tensor:
    """Maximum-weight perfect assignments of a batch `[B, n, n]` -> column of each row `[B, n]` (long).

    `threads`: worker threads of the lapx batch solvers (default: torch's thread count).
    `row_max`: the cost's row maxima `[B, n]` where the caller has them already (the lapx solvers use them).
    """
    if cost.shape[0] == 0:
        return torch.zeros(cost.shape[:2], dtype=torch.long, device=cost.device)
    name = choose_solver(cost.shape[1], cost.is_cuda, threads) if solver == "auto" else solver
    if name == "torch":
        return hungarian_torch(cost)
    if name.startswith("lapjv") and _lap_module() is not None:
        c = cost.detach().cpu()
        rm = c.amax(dim=2) if row_max is None else row_max.detach().cpu()
        out = _lap_reduced(f"{name}_batch", threads if threads is not None else max(1, torch.get_num_threads()), c, rm)
    else:
        out = _solver_fn(name, threads)(cost.detach().to("cpu", torch.float64).numpy())
    return torch.from_numpy(out).to(cost.device)


def certify_optimal(cost: torch.Tensor, cols: torch.Tensor, max_rounds: int = 8) -> torch.Tensor:
    """Which assignments `cols` `[B, n]` are provably maximal for `cost` `[B, n, n]` (bool `[B]`).

    An assignment σ is optimal iff no cyclic exchange of columns improves it, i.e. the graph with
    edge weights `w[i, j] = C[i, σ(i)] − C[i, σ(j)]` (row i giving up its column for row j's) has
    no negative cycle. Bellman-Ford from a virtual source: if the distances stop changing within
    `max_rounds` rounds they are feasible potentials and σ is optimal; pairs still changing are
    reported as not certified (they go to the exact solver, so a cap only costs time, never
    correctness). Changes below 1e-11·max|C| count as none (round-off).
    """
    c = cost.to(torch.float64)
    own = torch.gather(c, 2, cols.unsqueeze(2))                       # [B, n, 1]  C[i, σ(i)]
    # transposed, so that the relaxation reduces over the contiguous axis: wt[j, i] = w[i, j]
    wt = (own - torch.gather(c, 2, cols.unsqueeze(1).expand_as(c))).transpose(1, 2).contiguous()
    tol = 1e-11 * c.abs().amax(dim=(1, 2)).clamp_min(1e-300).unsqueeze(1)
    d = wt.amin(dim=2).clamp_max_(0.0)  # round 1 from the virtual source (distance 0 to every node)
    moved = (d < -tol).any(dim=1)
    certified = ~moved
    live = torch.nonzero(moved).squeeze(1)
    wt, d, tol = wt[live], d[live], tol[live]
    for _ in range(min(max_rounds, c.shape[1] + 1) - 1):
        if live.numel() == 0:
            break
        cand = (wt + d.unsqueeze(1)).amin(dim=2)
        still = (cand < d - tol).any(dim=1)
        certified[live[~still]] = True
        d = torch.minimum(d, cand)
        if not bool(still.all()):
            live, wt, d, tol = live[still], wt[still], d[still], tol[still]
    return certified
