"""Shard reader throughput: chunk-aware shuffled streaming vs reading rows in random order one by one."""
from __future__ import annotations

import shutil
import time

import h5py
import numpy as np

from gmnae.data.shard_stream import ShardStream
from gmnae.weightspace import Architecture
from gmnae.zoo.format import Zoo
from ._util import synthetic_zoo


def run(quick: bool = False) -> dict[str, float]:
    arch = Architecture.small_cnn("relu")
    n = 4000 if quick else 40000
    root = synthetic_zoo(n, arch)
    try:
        zoo = Zoo(root)
        stream = ShardStream(zoo, "train", 64, shuffle=True, shuffle_buffer=1024)
        t0 = time.perf_counter()
        rows = sum(len(b) for b in stream)
        streamed = rows / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        whole = zoo.read_params("train")
        bulk = len(whole) / (time.perf_counter() - t0)
        # Baseline: a map-style dataset reading one random row per __getitem__.
        shard = zoo.shards("train")[0]
        sample = np.random.default_rng(0).permutation(shard.count)[: 2000 if not quick else 500]
        t0 = time.perf_counter()
        with h5py.File(shard.path, "r") as f:
            ds = f["params"]
            for i in sample:
                ds[int(i)]
        random_rows = len(sample) / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
    return {"zoo_io.networks": n, "zoo_io.params_per_network": arch.n_params,
            "zoo_io.stream_shuffled.networks_per_s": streamed, "zoo_io.read_whole_split.networks_per_s": bulk,
            "zoo_io.random_row_reads.networks_per_s": random_rows,
            "zoo_io.stream_over_random_rows.ratio": streamed / random_rows}
