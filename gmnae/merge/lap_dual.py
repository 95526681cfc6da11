"""An exact batched assignment solver that returns dual potentials: `lap_dual.c`, compiled on first use.

    cols, u, v = solve(cost)                 # cost [B, n, n] float32/float64 -> cols [B, n] int64, u, v [B, n] float64
    cols, u, v = solve(cost, init_cols=cols, init_v=v)   # warm start from an earlier solve's assignment and duals

Maximisation. For every problem, `u[i] + v[j] >= C[i, j]` for all i, j with equality on the assigned pairs, so
`u.sum() + v.sum()` is the optimal value: the duals certify the assignment (up to float64 rounding of the dual
updates, as in every Jonker-Volgenant code). The algorithm is Jonker-Volgenant (column reduction, reduction
transfer, augmenting row reduction, then one Dijkstra shortest augmenting path per row left free), O(n^3) per
problem, in float64 (float32 costs are widened exactly).

Warm start: given column potentials `init_v` (e.g. the previous solve's v of a matrix that has changed a little
since) and/or an assignment `init_cols`, the solver starts from `u_i = max_j C_ij - v_j` (feasible whatever v is),
keeps the initial pairs that are tight, gives a row left free its best column where that one is free, and runs
a shortest augmenting path only for the rows still free. When the initial assignment is optimal and `init_v` are
duals proving it, nothing is augmented; `augmentations` (optional output) counts the paths per problem.

Ties are broken by row and column order, so on problems with several optimal assignments this solver, scipy and
lapx may return different (equally optimal) ones, and a warm start may return another optimum than a cold solve.

Built like the other native kernels (gmnae/zoo/siren_native.py): once per (source, compiler, flags, CPU) into
`$GMNAE_CACHE_DIR/native`; no -ffast-math (exactness). Without a C compiler or a writable cache, or with
`GMNAE_NATIVE=0`, `library()` returns None and `gmnae.merge.assignment` does not offer the `jv` solver.
The batch is split over `threads` (a thread pool; ctypes releases the GIL), a result never depends on it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..nn.gated_edge_native import _chunks
from ..zoo.siren_native import cached_build

SOURCE = Path(__file__).with_name("lap_dual.c")
# -ffp-contract=off: GCC's GNU-C default may fuse a*b+c; nothing here multiplies, but exactness is the point.
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fPIC", "-shared"]
_P = ctypes.c_void_p


def _build() -> Path | None:
    def compile_to(cc: str, out: str) -> bool:
        return subprocess.run([cc, *FLAGS, str(SOURCE), "-o", out], capture_output=True).returncode == 0

    return cached_build("lap_dual", SOURCE, FLAGS, compile_to)


@lru_cache(maxsize=None)
def _library():
    try:
        path = _build()
        lib = None if path is None else ctypes.CDLL(str(path))
    except OSError:
        return None
    if lib is not None:
        i64 = ctypes.c_int64
        lib.lap_dual_batch.argtypes = [i64, i64, i64, _P, ctypes.c_int, _P, _P, _P, _P, _P, _P]
        lib.lap_dual_batch.restype = ctypes.c_int
    return lib


def library():
    """The compiled solver, or None (GMNAE_NATIVE=0, no C compiler, no writable cache)."""
    if os.environ.get("GMNAE_NATIVE", "1") == "0":
        return None
    return _library()


def version() -> str:
    """What identifies the solver's code (the solver choice cached on disk is keyed by it): its source's hash."""
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12] if library() is not None else "none"


def _addr(a: np.ndarray | None):
    return None if a is None else a.ctypes.data


def solve(cost, threads: int = 1, init_cols=None, init_v=None, augmentations: np.ndarray | None = None):
    """Maximum-weight perfect assignments of `cost` `[B, n, n]` (float32 or float64, array or CPU tensor) with
    their duals: `(cols [B, n] int64, u [B, n] float64, v [B, n] float64)`. `init_cols` `[B, n]` / `init_v`
    `[B, n]`: a warm start (either or both). `augmentations`: an int64 array `[B]` that receives the number of
    shortest augmenting paths each problem ran. Raises RuntimeError where the library is unavailable."""
    lib = library()
    if lib is None:
        raise RuntimeError("the native assignment solver lap_dual.c did not build (GMNAE_NATIVE=0 or no C compiler)")
    c = np.asarray(cost)
    if c.dtype not in (np.float32, np.float64):
        c = c.astype(np.float64)
    c = np.ascontiguousarray(c)
    if c.ndim != 3 or c.shape[1] != c.shape[2]:
        raise ValueError(f"solve needs square cost matrices [B, n, n], got {c.shape}")
    B, n = c.shape[:2]
    x0 = None if init_cols is None else np.ascontiguousarray(np.asarray(init_cols), dtype=np.int64)
    v0 = None if init_v is None else np.ascontiguousarray(np.asarray(init_v), dtype=np.float64)
    for name, a in (("init_cols", x0), ("init_v", v0)):
        if a is not None and a.shape != (B, n):
            raise ValueError(f"{name} must be [B, n] = {(B, n)}, got {a.shape}")
    if augmentations is not None and (augmentations.shape != (B,) or augmentations.dtype != np.int64
                                      or not augmentations.flags.c_contiguous):
        raise ValueError("augmentations must be a contiguous int64 array [B]")
    if not (np.isfinite(c).all() and (v0 is None or np.isfinite(v0).all())):
        raise ValueError("lap_dual.solve needs finite costs and init_v")
    cols, u, v = np.empty((B, n), np.int64), np.empty((B, n)), np.empty((B, n))
    args = (n, _addr(c), int(c.dtype == np.float32), _addr(x0), _addr(v0), _addr(cols), _addr(u), _addr(v),
            _addr(augmentations))

    def run(span) -> int:
        return lib.lap_dual_batch(span[0], span[1], *args)

    spans = _chunks(B, threads, True) if B else []
    if len(spans) <= 1:
        rc = [run(s) for s in spans]
    else:
        with ThreadPoolExecutor(len(spans) - 1) as pool:  # the first span runs on the calling thread
            futs = [pool.submit(run, s) for s in spans[1:]]
            rc = [run(spans[0])] + [f.result() for f in futs]
    if -2 in rc:  # finite inputs whose dual updates overflowed
        raise ValueError("lap_dual: a problem has no finite optimum")
    if any(rc):
        raise MemoryError("lap_dual: out of memory")
    return cols, u, v
