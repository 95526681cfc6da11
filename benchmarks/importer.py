"""Importer throughput and memory: `python -m benchmarks --only importer` (add `--quick` for a small run).

The full run writes a synthetic Small CNN Zoo of the published size — `weights.npy` float32
[270000, 4970] (5.4 GB, filled block by block through `np.lib.format.open_memmap`), a
`metrics.csv.gz` with the zoo's columns (30,000 networks x 9 checkpoints, network-major) and the
`layout.csv` — into a temporary folder, imports it in child processes and deletes everything
afterwards. Each import runs in its own process, which reports its wall time and peak RSS
(`ru_maxrss`), so the figures are the importer's alone. Cases:

- `relu_published`: the usual import (final checkpoints, ReLU, the published split with the shipped
  order file), once with the weights file dropped from the page cache (`cold`,
  `posix_fadvise(DONTNEED)` on that file only) and once right after (`warm`);
- `all_steps_clean`: every row of the file (`--activation all --all-steps --split clean`): the whole
  5.4 GB streamed through; `read_mb_per_s` is weights bytes per second;
- `mnist_inr`: DWSNets-style state-dict folders (`torch.load` per INR dominates).

`python_baseline_rss_mb` is the peak RSS of a child that only imports the importer module, so the
importer's own working memory is `peak_rss_mb - python_baseline_rss_mb`.
`--quick`: 1,000 networks (9,000 rows) and 200 INRs, with a synthetic order file.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = (0, 1, 2, 3, 20, 40, 60, 80, 86)
LAYOUT = [("sequential/conv2d/bias:0", (16,)), ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
          ("sequential/conv2d_1/bias:0", (16,)), ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
          ("sequential/conv2d_2/bias:0", (16,)), ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
          ("sequential/dense/bias:0", (10,)), ("sequential/dense/kernel:0", (16, 10))]
COLUMNS = ["config.activation", "config.b_init", "config.dataset", "config.dnn_architecture", "config.dropout",
           "config.epochs", "config.epochs_between_checkpoints", "config.init_std", "config.l2reg",
           "config.learning_rate", "config.num_layers", "config.num_units", "config.optimizer", "config.random_seed",
           "config.train_fraction", "config.w_init", "modeldir", "step", "test_accuracy", "test_loss",
           "train_accuracy", "train_loss"]
N_PARAMS = 4970


def write_synthetic_small_cnn_zoo(root: Path, n_networks: int, seed: int = 0, block_rows: int = 8192) -> Path:
    """A Small CNN Zoo folder of `n_networks` x 9 rows in the published formats (see module docstring)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_rows = n_networks * len(STEPS)
    w = np.lib.format.open_memmap(root / "weights.npy", mode="w+", dtype=np.float32, shape=(n_rows, N_PARAMS))
    base = (rng.standard_normal((block_rows, N_PARAMS)) * 0.3).astype(np.float32)
    for k, a in enumerate(range(0, n_rows, block_rows)):
        b = min(n_rows, a + block_rows)
        w[a:b] = base[:b - a] + np.float32(1e-3 * k)  # distinct blocks, cheap to make
    w.flush()
    del w
    with open(root / "weights.npy", "rb+") as f:
        os.fsync(f.fileno())
    acts = rng.choice(["relu", "tanh"], n_networks)
    opts = rng.choice(["adam", "sgd", "rmsprop"], n_networks)
    lrs = rng.choice([1e-4, 1e-3, 1e-2], n_networks)
    acc = rng.uniform(0.1, 0.55, n_rows).round(6)
    with gzip.open(root / "metrics.csv.gz", "wt", newline="", compresslevel=1) as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for r in range(n_rows):
            k, s = divmod(r, len(STEPS))
            out.writerow([acts[k], "zeros", "cifar10", "cnn", 0.0, 86, 20, 0.05, 1e-4, lrs[k], 3, 16, opts[k], 42,
                          1.0, "he_normal", f"/placer/prod/home/dnn-science/cifar10/{k:06d}", STEPS[s], acc[r],
                          2.0, acc[r], 2.0])
    with open(root / "layout.csv", "w", newline="") as f:
        out, pos = csv.writer(f), 0
        out.writerow(["varname", "start_idx", "end_idx", "shape"])
        for name, shape in LAYOUT:
            size = int(np.prod(shape))
            out.writerow([name, pos, pos + size, str(shape)])
            pos += size
    return root


def write_synthetic_mnist_inrs(root: Path, n: int, seed: int = 0) -> Path:
    import torch

    g = torch.Generator().manual_seed(seed)
    shapes = [(32, 2), (32,), (32, 32), (32,), (1, 32), (1,)]
    for i in range(n):
        word = "training" if i % 7 else "testing"
        d = root / f"mnist_png_{word}_{i % 10}_{i}" / "checkpoints"
        d.mkdir(parents=True)
        sd = {f"seq.{j // 2}.{'weight' if j % 2 == 0 else 'bias'}": torch.randn(s, generator=g) * 0.1
              for j, s in enumerate(shapes)}
        torch.save(sd, d / "model_final.pth")
    return root


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


_CHILD = r"""
import json, resource, sys, time
source, kwargs = sys.argv[1], json.loads(sys.argv[2])
if source == "small-cnn-zoo":
    from gmnae.zoo.import_small_cnn_zoo import import_small_cnn_zoo as fn
elif source == "mnist-inr":
    from gmnae.zoo.import_mnist_inr import import_mnist_inr as fn
else:
    import gmnae.zoo.import_small_cnn_zoo as fn
    fn = None
t0 = time.perf_counter()
if fn is not None:
    out = fn(progress=False, **kwargs)
seconds = time.perf_counter() - t0
n = 0
if fn is not None:
    from gmnae.zoo import Zoo
    z = Zoo(out)
    n = sum(z.count(s) for s in z.splits)
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
rss = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "networks": n, "maxrss_mb": rss}))
"""


def _child(source: str, **kwargs) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    res = subprocess.run([sys.executable, "-c", _CHILD, source, json.dumps(kwargs, default=str)], capture_output=True,
                         text=True, env=env, cwd=Path(__file__).resolve().parents[1])  # the repository root
    if res.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _figures(prefix: str, r: dict, out: dict) -> None:
    out[f"{prefix}.networks"] = r["networks"]
    out[f"{prefix}.seconds"] = round(r["seconds"], 3)
    out[f"{prefix}.networks_per_s"] = round(r["networks"] / r["seconds"], 1)
    out[f"{prefix}.peak_rss_mb"] = round(r["maxrss_mb"], 1)


def run(quick: bool = False) -> dict[str, float]:
    n_networks = 1_000 if quick else 30_000
    n_inrs = 200 if quick else 3_000
    tmp_parent = os.environ.get("GMNAE_BENCH_TMP", tempfile.gettempdir())
    weights_bytes = n_networks * len(STEPS) * N_PARAMS * 4
    free = shutil.disk_usage(tmp_parent).free
    if free < 1.2 * weights_bytes + 2**30:
        raise RuntimeError(f"the importer benchmark needs {1.2 * weights_bytes / 2**30:.1f} GiB free in {tmp_parent} "
                           f"({free / 2**30:.1f} GiB free); set GMNAE_BENCH_TMP to a roomier folder")
    room_for_all_steps = free > 2.2 * weights_bytes + 2**30
    work = Path(tempfile.mkdtemp(prefix="gmnae-bench-importer-", dir=tmp_parent))
    out: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        src = write_synthetic_small_cnn_zoo(work / "small-cnn-zoo", n_networks)
        out["importer.small_cnn.rows"] = n_networks * len(STEPS)
        out["importer.small_cnn.weights_gb"] = round(weights_bytes / 1e9, 2)
        out["importer.small_cnn.synthetic_write_seconds"] = round(time.perf_counter() - t0, 1)
        order = None
        if quick:  # the shipped order belongs to the full-size zoo; a synthetic one of the same shape
            perm = np.random.default_rng(1).permutation(n_networks * len(STEPS))
            order = work / "order.csv"
            order.write_text("0\n" + "\n".join(map(str, perm)) + "\n")
        out["importer.python_baseline_rss_mb"] = round(_child("baseline")["maxrss_mb"], 1)
        common = {"src": str(src), "activation": "relu", "split": "published", "order": str(order) if order else None}
        drop_from_page_cache(src / "weights.npy")
        _figures("importer.small_cnn.relu_published.cold", _child("small-cnn-zoo", out=str(work / "z1"), **common), out)
        _figures("importer.small_cnn.relu_published.warm", _child("small-cnn-zoo", out=str(work / "z2"), **common), out)
        shutil.rmtree(work / "z1"), shutil.rmtree(work / "z2")
        if room_for_all_steps:
            drop_from_page_cache(src / "weights.npy")
            r = _child("small-cnn-zoo", src=str(src), out=str(work / "z3"), activation="all", split="clean",
                       all_steps=True)
            _figures("importer.small_cnn.all_steps_clean.cold", r, out)
            out["importer.small_cnn.all_steps_clean.cold.read_mb_per_s"] = round(weights_bytes / 1e6 / r["seconds"], 1)
            shutil.rmtree(work / "z3")
        shutil.rmtree(src)
        inrs = write_synthetic_mnist_inrs(work / "mnist-inrs", n_inrs)
        _figures("importer.mnist_inr", _child("mnist-inr", src=str(inrs), out=str(work / "z4")), out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
