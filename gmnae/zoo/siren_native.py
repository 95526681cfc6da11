"""The forge's native SIREN fitter: `siren_fit.c`, compiled on first use with the machine's C compiler.

Why C: one network's whole fit (1,185 parameters, Adam state, a row of activations) lives in a core's
caches, so a loop over pixels that keeps each H-vector in registers does the ~1 GFLOP of a 200-step fit
with no memory traffic; the batched torch path streams `[B, 784, 32]` activations through memory a dozen
times per step (`python -m benchmarks --only forge` measures both). Networks are independent, so a block
is split over threads (ctypes releases the GIL) and the result does not depend on the thread count.

The library is built once per (source, compiler flags, CPU) into `$GMNAE_CACHE_DIR/native` (default
`~/.cache/gmnae/native`) and reused. Without a C compiler or a writable cache, or with `GMNAE_NATIVE=0`, `fitter()` returns
None and the forge uses the torch path (same recipe; results agree to float rounding, tests check it).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("siren_fit.c")
FLAGS = ["-O3", "-ffast-math", "-fopenmp", "-march=native", "-fPIC", "-shared"]
LIBS = ["-lmvec", "-lm"]  # glibc's vector sin/cos (AVX-512 / AVX2 variants)
_FLOAT_P = ctypes.POINTER(ctypes.c_float)


def cache_dir() -> Path:
    root = os.environ.get("GMNAE_CACHE_DIR") or Path.home() / ".cache" / "gmnae"
    return Path(root) / "native"


def _cpu_key() -> str:
    """The CPU's feature flags: -march=native code is only valid on a CPU with the same ones."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cached_build(stem: str, source: Path, key_parts: list[str], compile_to) -> Path | None:
    """The shared library `$GMNAE_CACHE_DIR/native/{stem}_{key}.so` of `source`, built on first use.

    `key_parts`: the flags and defines that make this build differ (the source text, the compiler and the CPU's
    flags are added). `compile_to(cc, out)` runs the compiler to write the library at `out` and says whether it
    succeeded. It writes to a private name that is then renamed: concurrent builds (DDP ranks, parallel tests)
    never see half a file. None where there is no C compiler or the build fails."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    key = hashlib.sha256("\0".join([source.read_text(), cc, *key_parts, _cpu_key()]).encode()).hexdigest()[:16]
    lib = cache_dir() / f"{stem}_{key}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
    os.close(fd)
    try:
        if not compile_to(cc, tmp):
            return None
        os.replace(tmp, lib)
        return lib
    finally:
        Path(tmp).unlink(missing_ok=True)


def _build(width: int) -> Path | None:
    def compile_to(cc: str, out: str) -> bool:
        # without libmvec (non-glibc) the sines are scalar, still correct
        return any(subprocess.run([cc, *FLAGS, f"-DH={width}", str(SOURCE), "-o", out, *libs],
                                  capture_output=True).returncode == 0 for libs in (LIBS, ["-lm"]))

    return cached_build(f"siren_fit_h{width}", SOURCE, [*FLAGS, *LIBS, str(width)], compile_to)


@lru_cache(maxsize=None)
def _library(width: int):
    try:
        path = _build(width)
        if path is None:
            return None
        lib = ctypes.CDLL(str(path))
    except OSError:
        return None
    f, i = ctypes.c_float, ctypes.c_int
    lib.siren_fit.argtypes = [i, i, f, f, f, f, f, i, i, _FLOAT_P, _FLOAT_P, f, f, _FLOAT_P, _FLOAT_P, _FLOAT_P]
    lib.siren_fit.restype = i
    lib.siren_grads.argtypes = [i, i, i, _FLOAT_P, _FLOAT_P, f, f, _FLOAT_P, _FLOAT_P, _FLOAT_P, _FLOAT_P]
    lib.siren_grads.restype = None
    lib.siren_param_count.restype = i
    return lib


def supports(arch) -> bool:
    """The kernel's architecture: 2 -> H -> H -> 1 SIREN, H a multiple of 16 (<= 64)."""
    widths = [arch.layers[0].n_in] + [spec.n_out for spec in arch.layers]
    return (arch.activation == "sine" and len(arch.layers) == 3 and widths[0] == 2 and widths[-1] == 1
            and widths[1] == widths[2] and widths[1] % 16 == 0 and widths[1] <= 64
            and all(spec.layer_type == "dense" for spec in arch.layers))


_warned = False


def fitter(arch):
    """The compiled library for `arch`, or None (unsupported architecture, GMNAE_NATIVE=0, no compiler)."""
    global _warned
    if os.environ.get("GMNAE_NATIVE", "1") == "0" or not supports(arch):
        return None
    lib = _library(arch.layers[0].n_out)
    if lib is None and not _warned:
        _warned = True
        print("note: the native SIREN fitter did not build (it needs a C compiler, e.g. apt-get install gcc, and a "
              f"writable {cache_dir()}; GMNAE_CACHE_DIR moves it): fitting with torch, ~4x slower", file=sys.stderr)
    return lib


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_FLOAT_P)


def _grid_axes(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """x (column) and y (row) coordinates of `gmnae.tasks.grid.coordinate_grid`, which is their product."""
    axis = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
    return axis, axis.copy()


def fit_on_grid(lib, arch, init: np.ndarray, targets: np.ndarray, resolution: int, steps: int, lr: float,
                eta_min: float, threads: int = 1) -> np.ndarray:
    """Fit SIRENs from `init` `[B, P]` to `targets` `[B, R*R]` (row by row): Adam (torch's defaults) with
    the learning rate of CosineAnnealingLR(steps, eta_min). Returns the parameters `[B, P]`."""
    params = np.ascontiguousarray(init, dtype=np.float32).copy()
    targets = np.ascontiguousarray(targets, dtype=np.float32)
    xs, ys = _grid_axes(resolution)
    last_mse = np.zeros(len(params), np.float32)

    def run(rows: slice) -> None:
        p, t, m = params[rows], targets[rows], last_mse[rows]
        rc = lib.siren_fit(len(p), steps, lr, eta_min, 0.9, 0.999, 1e-8, resolution, resolution, _ptr(xs), _ptr(ys),
                           arch.w0, arch.output_offset, _ptr(t), _ptr(p), _ptr(m))
        if rc != 0:
            raise ValueError(f"the native SIREN fitter does not take a {resolution} x {resolution} grid (at most 64)")

    # Small chunks balance the threads; each chunk is one C call, the GIL released while it runs.
    bounds = np.linspace(0, len(params), max(1, min(len(params), 8 * threads)) + 1).astype(int)
    chunks = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    if threads <= 1:
        for rows in chunks:
            run(rows)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, chunks))
    return params


def grads_on_grid(lib, arch, params: np.ndarray, targets: np.ndarray, resolution: int):
    """(MSE `[B]`, gradient `[B, P]`) of each SIREN's mean squared error: the kernel's own gradient (tests)."""
    params = np.ascontiguousarray(params, dtype=np.float32)
    targets = np.ascontiguousarray(targets, dtype=np.float32)
    grads, mse = np.zeros_like(params), np.zeros(len(params), np.float32)
    xs, ys = _grid_axes(resolution)
    lib.siren_grads(len(params), resolution, resolution, _ptr(xs), _ptr(ys), arch.w0, arch.output_offset,
                    _ptr(targets), _ptr(params), _ptr(grads), _ptr(mse))
    return mse, grads
