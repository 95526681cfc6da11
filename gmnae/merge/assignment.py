"""Batched linear assignment (maximisation) for weight matching: the solvers, the timed choice among
them and the optimality certificate that lets matching skip a solve.

Solvers: `scipy` (`linear_sum_assignment`, the reference, always available), the `lapx` batch solvers
when the package is installed, `jv` (`gmnae.merge.lap_dual`: Jonker-Volgenant in C, compiled on first
use, the one that also returns dual potentials and takes a warm start; absent with `GMNAE_NATIVE=0` or
no C compiler) and a batched Hungarian algorithm in torch (`torch`, runs on the tensors' device).
`solve_assignments_with_duals` returns the `jv` solver's duals and takes a warm start from earlier ones.
`solver="auto"` times the available ones on hard matching-like problems once per process, problem size
and thread count (the choice is kept on disk across processes, keyed by the solvers' versions, jv's
source included) and uses the fastest (`choose_solver`). `certify_optimal` proves an assignment still
optimal (a capped Bellman-Ford finds no improving cyclic exchange), so that solve can be skipped exactly.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from . import lap_dual


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
    if lap_dual.library() is not None:
        names.append("jv")
    return names


def _threads(threads: int | None) -> int:
    """The batch solvers' worker threads: as given, else torch's thread count."""
    return threads if threads is not None else max(1, torch.get_num_threads())


def _jv(threads: int):
    return lambda cost: lap_dual.solve(cost, _threads(threads))[0]


def _solver_fn(name: str, threads: int | None = None):
    if name == "scipy":
        return _solve_scipy
    if name == "torch":
        return _solve_torch
    if name.startswith("lapjv"):
        if _lap_module() is None:
            raise ValueError(f"solver {name!r} needs the lapx package (pip install lapx)")
        return _lap_batch(f"{name}_batch", _threads(threads))
    if name == "jv":
        if lap_dual.library() is None:
            raise ValueError("solver 'jv' needs a C compiler (and GMNAE_NATIVE unset or 1)")
        return _jv(threads)
    raise ValueError(f"unknown assignment solver {name!r}; available: {', '.join(available_solvers())}")


_CHOSEN: dict[tuple, str] = {}
CACHE_ENV = "GMNAE_CACHE_DIR"          # where the measured choice is kept across processes
NO_CACHE_ENV = "GMNAE_SOLVER_CACHE"    # "0" / "off": measure in every process, keep nothing on disk


def _benchmark_problems(n: int, batch: int = 256, seed: int = 0) -> np.ndarray:
    """Hard matrices like the ones matching two *independent* networks meets (the common case).

    Measured on independent SIREN 2-32-32-1 pairs, every layer's cost is dominated by a rank-3 part (the
    2-input first layer and the bias: singular values ~1, 0.35, 0.25) over a small full-rank rest (~2%):
    near-ties everywhere, ~2x the solve time of random Gaussian costs and ~7x that of planted-permutation
    costs. Orbit pairs (easy, nearly diagonal problems) are not what the timing should be decided on:
    the solvers' order there differs (scipy is close to the best) and every solver is fast anyway.
    """
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((batch, n, 3)) * np.array([1.0, 0.4, 0.3])
    v = rng.standard_normal((batch, n, 3))
    x = rng.standard_normal((batch, n, 4 * n))
    y = rng.standard_normal((batch, n, 4 * n))
    rest = np.einsum("bik,bjk->bij", x, y) / np.sqrt(4 * n)
    return np.einsum("bik,bjk->bij", u, v) + 0.02 * np.sqrt(n) * rest


def _versions() -> str:
    import scipy

    lap = _lap_module()
    return (f"scipy={scipy.__version__},lapx={getattr(lap, '__version__', 'none') if lap else 'none'},"
            f"jv={lap_dual.version()},torch={torch.__version__},numpy={np.__version__}")


def _machine() -> str:
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from ..threads import usable_cpus

        cpus = usable_cpus()
    except Exception:  # noqa: BLE001
        cpus = 0
    return f"{platform.node()}|{model}|cpus={cpus}"


def _cache_file():
    import os
    from pathlib import Path

    if os.environ.get(NO_CACHE_ENV, "").lower() in ("0", "off", "no", "false"):
        return None
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gmnae"
    return Path(root) / "assignment-solver.json"


def _disk_key(key: tuple) -> str:
    n, on_gpu, threads, torch_threads = key
    gpu = torch.cuda.get_device_name(0) if on_gpu and torch.cuda.is_available() else "none"
    return f"n={n},gpu={gpu},threads={threads},torch_threads={torch_threads},{_versions()},{_machine()}"


def _disk_get(key: tuple) -> str | None:
    import json

    path = _cache_file()
    if path is None:
        return None
    try:
        entry = json.loads(path.read_text()).get(_disk_key(key))
    except (OSError, ValueError):
        return None
    name = entry.get("solver") if isinstance(entry, dict) else None
    return name if name in available_solvers() else None


def _disk_put(key: tuple, name: str, timings: dict[str, float]) -> None:
    import json
    import os
    import time as _time

    path = _cache_file()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[_disk_key(key)] = {"solver": name, "us_per_problem": {k: round(v * 1e6, 2) for k, v in timings.items()},
                                "measured": _time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: processes measuring side by side never leave half a file
    except OSError:
        pass  # a read-only home must never break matching


def time_solvers(n: int, on_gpu: bool = False, threads: int | None = None, rounds: int = 3,
                 batch: int = 256) -> dict[str, float]:
    """Seconds per n x n problem of every available exact solver, on `batch` hard matching-like problems
    (`_benchmark_problems`), through the path the matcher calls (`solve_assignments` on float32 costs
    with their row maxima). The candidates take turns, `rounds` times, and each keeps its best round,
    so that a busy spell of a shared machine does not land on one candidate only.

    Runs under torch's current intra-op thread count, as the matcher's solves do (`match_weights` sets
    1): with 2 torch threads on 2 cores every solver here was 1.6-2.9x slower (OpenMP threads spinning
    after the torch ops around each solve), and their order changed."""
    threads = threads or torch.get_num_threads()
    if on_gpu:
        # Moving a small cost batch to the host and back is cheap next to O(n^2) GPU kernel launches;
        # still, compare the device Hungarian against the host solvers.
        candidates = available_solvers()
    else:
        candidates = [s for s in available_solvers() if s != "torch"]  # slowest on CPU by far
    cost = torch.from_numpy(_benchmark_problems(n, batch)).float()
    row_max = cost.amax(dim=2)
    dev_cost = cost.cuda() if on_gpu else None

    def run(name: str, c: torch.Tensor, rm: torch.Tensor) -> None:
        if name == "torch" and on_gpu:  # the device solver, timed on the device it would run on
            hungarian_torch(dev_cost[: len(c)])
            torch.cuda.synchronize()
        else:
            solve_assignments(c, name, threads, row_max=rm)

    best: dict[str, float] = {}
    for name in candidates:
        try:
            run(name, cost[:8], row_max[:8])  # warm-up (imports, thread pools)
            best[name] = float("inf")
        except Exception:  # noqa: BLE001  a broken optional solver must never break matching
            continue
    for _ in range(rounds):
        for name in list(best):
            t0 = time.perf_counter()
            try:
                run(name, cost, row_max)
            except Exception:  # noqa: BLE001
                del best[name]
                continue
            best[name] = min(best[name], (time.perf_counter() - t0) / batch)
    return best


def choose_solver(n: int, on_gpu: bool = False, threads: int | None = None) -> str:
    """The fastest exact solver for n x n problems on this machine with `threads` solver threads.

    Measured (`time_solvers`: ~0.1-0.5 s) once per process and problem size, on hard problems like
    those of independent networks; the choice is also kept on disk (`$GMNAE_CACHE_DIR`, else
    `~/.cache/gmnae/assignment-solver.json`), keyed by the size, solver and torch thread counts, solver
    versions and the machine, so later processes skip the measurement. `GMNAE_SOLVER_CACHE=off` measures every time.
    """
    threads = threads or torch.get_num_threads()
    key = (n, on_gpu, threads, torch.get_num_threads())
    if key in _CHOSEN:
        return _CHOSEN[key]
    name = _disk_get(key)
    if name is None:
        timings = time_solvers(n, on_gpu, threads)
        name = min(timings, key=timings.get) if timings else "scipy"
        _disk_put(key, name, timings)
    _CHOSEN[key] = name
    return name


def solve_assignments(cost: torch.Tensor, solver: str = "auto", threads: int | None = None,
                      row_max: torch.Tensor | None = None) -> torch.Tensor:
    """Maximum-weight perfect assignments of a batch `[B, n, n]` -> column of each row `[B, n]` (long).

    `threads`: worker threads of the lapx and jv batch solvers (default: torch's thread count).
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
        out = _lap_reduced(f"{name}_batch", _threads(threads), c, rm)
    elif name == "jv" and lap_dual.library() is not None:
        return solve_assignments_with_duals(cost, threads)[0]
    else:
        out = _solver_fn(name, threads)(cost.detach().to("cpu", torch.float64).numpy())
    return torch.from_numpy(out).to(cost.device)


def solve_assignments_with_duals(cost: torch.Tensor, threads: int | None = None, init_cols: torch.Tensor | None = None,
                                 init_v: torch.Tensor | None = None, augmentations: np.ndarray | None = None
                                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximum-weight assignments of `cost` `[B, n, n]` with their dual potentials, by the `jv` solver:
    `(cols [B, n] long, u [B, n] float64, v [B, n] float64)` on the cost's device, with `u_i + v_j >= C_ij`
    everywhere and equality on the assignment (sum(u) + sum(v) is the optimal value, up to float64 rounding).

    `init_cols` / `init_v` `[B, n]`: a warm start, e.g. an earlier solve's assignment and v for a cost that has
    changed since; any v is a valid start (the solver takes `u_i = max_j C_ij - v_j`), and the closer it is to
    this cost's duals, the fewer rows need an augmenting path (`augmentations`: an int64 array `[B]` that receives
    their number per problem). `threads`: worker threads (default: torch's thread count). Raises RuntimeError
    where the solver is unavailable (`"jv" not in available_solvers()`).
    """
    c = cost.detach().cpu()
    if c.dtype not in (torch.float32, torch.float64):
        c = c.double()
    as_np = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
    cols, u, v = lap_dual.solve(c.numpy(), _threads(threads), as_np(init_cols), as_np(init_v), augmentations)
    return tuple(torch.from_numpy(x).to(cost.device) for x in (cols, u, v))


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
