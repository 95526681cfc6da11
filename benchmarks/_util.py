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


def native_bf16(section: str) -> bool:
    """Whether this CPU has native bf16 matmuls (AMX / avx512_bf16). Without them autocast is emulated, ~15x slower
    than fp32 (and `trainer.precision: auto` runs fp32): `section` then times fp32 only and says so in one line."""
    from gmnae.commands.trainer_setup import BF16_CPU_FLAGS, cpu_bf16_flags

    if cpu_bf16_flags():
        return True
    print(f"  {section}: bf16 not timed: this CPU has no {'/'.join(BF16_CPU_FLAGS)} (emulated bf16; "
          "trainer.precision auto runs 32-true here)", flush=True)
    return False


def run_child(module: str, spec: dict) -> tuple[dict, float]:
    """`benchmarks.<module>._child(spec)` in a fresh interpreter (its own thread pool and allocator state), and
    the highest 1-minute load seen before or after it."""
    import json
    import os
    import subprocess
    import sys

    load0 = os.getloadavg()[0]
    code = (f"import json,sys; from benchmarks.{module} import _child; "
            "print('RESULT', json.dumps(_child(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{module} child failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:]), max(load0, os.getloadavg()[0])


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
