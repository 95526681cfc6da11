"""Forge throughput: batched training of many networks vs one network at a time (same code, B = 1)."""
from __future__ import annotations

import time

import numpy as np
import torch

from gmnae.tasks import digits
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import Architecture
from gmnae.zoo.forge import DigitsCNNConfig, DigitsCNNForge, MNIST5kINRConfig, MNIST5kINRForge, fit_inrs, siren_init


def run(quick: bool = False) -> dict[str, float]:
    out = {}
    arch, coords = Architecture.siren(), coordinate_grid(28)
    steps = 30 if quick else 150
    targets = digits.inr_targets()
    batch, single = (64, 2) if quick else (512, 4)
    t0 = time.perf_counter()
    fit_inrs(arch, siren_init(arch, list(range(batch))), targets[:batch], steps, 1e-3, coords)
    batched = batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(single):
        fit_inrs(arch, siren_init(arch, [i]), targets[i:i + 1], steps, 1e-3, coords)
    one = single / (time.perf_counter() - t0)
    out.update({"forge.inr.steps": steps, "forge.inr.batched.networks_per_s": batched,
                "forge.inr.one_at_a_time.networks_per_s": one, "forge.inr.batched_over_one.ratio": batched / one})

    # the mnist5k-inr recipe as built (published init, 200 full-image steps); goal: >= 1,000 networks/min on 2 cores
    inr5k = MNIST5kINRForge(MNIST5kINRConfig(steps=20 if quick else 200))
    n5k = 64 if quick else 500
    t0 = time.perf_counter()
    inr5k.train_block(np.arange(n5k))
    out.update({"forge.mnist5k_inr.steps": inr5k.cfg.steps,
                "forge.mnist5k_inr.networks_per_min": n5k * 60 / (time.perf_counter() - t0)})

    cnn_steps = 30 if quick else 300
    cnn_batch, cnn_single = (32, 2) if quick else (256, 4)
    forge = DigitsCNNForge(DigitsCNNConfig(size=cnn_batch, steps=cnn_steps, block_size=cnn_batch))
    t0 = time.perf_counter()
    forge.train_block(np.arange(cnn_batch))
    batched = cnn_batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(cnn_single):
        forge.train_block(np.array([i]))
    one = cnn_single / (time.perf_counter() - t0)
    out.update({"forge.cnn.steps": cnn_steps, "forge.cnn.batched.networks_per_s": batched,
                "forge.cnn.one_at_a_time.networks_per_s": one, "forge.cnn.batched_over_one.ratio": batched / one,
                "forge.threads": torch.get_num_threads()})
    return out
