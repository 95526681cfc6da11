"""Small helpers shared by the benchmark sections."""
from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeat: int = 3, warmup: int = 1) -> float:
    """Best wall time of `repeat` calls after `warmup` calls (seconds)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_zoo(n: int, arch, root: Path | None = None, seed: int = 0) -> Path:
    """A zoo of random parameters (reading speed does not depend on what the numbers are)."""
    from gmnae.zoo.format import ZooWriter

    root = Path(root or tempfile.mkdtemp(prefix="gmnae-bench-")) / "zoo"
    rng = np.random.default_rng(seed)
    with ZooWriter(root, "bench", arch) as w:
        for s in range(0, n, 4096):
            m = min(4096, n - s)
            w.add("train", rng.standard_normal((m, arch.n_params), dtype=np.float32) * 0.1, {"id": np.arange(s, s + m)})
    return root
