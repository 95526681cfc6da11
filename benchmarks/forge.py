"""Forge throughput: batched training of many networks vs one network at a time (same code, B = 1)."""
from __future__ import annotations

import time

import numpy as np
import torch

from gmnae.tasks import digits, mnist5k
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import Architecture
from gmnae.zoo import siren_native
from gmnae.zoo.cnn_forge import DigitsCNNConfig, DigitsCNNForge
from gmnae.zoo.inr_forge import MNIST5kINRConfig, MNIST5kINRForge, fit_inrs, siren_init
from gmnae.zoo.inr_forge import dwsnets_init, fit_inrs_on_grid


def siren_fit_flops(arch, pixels: int, steps: int) -> float:
    """Matmul FLOPs of fitting one SIREN: per pixel and step, forward (W x) and backward (dW, dx) of every
    layer, 2 FLOPs per multiply-add; sines, the loss and Adam are not counted."""
    per_pixel = sum(3 * 2 * spec.n_in * spec.n_out for spec in arch.layers)
    return float(per_pixel * pixels * steps)


def native_vs_block(quick: bool) -> dict[str, float]:
    """The mnist5k-inr / fmnist-inr recipe (published init, 200 full-image steps): the native fitter against
    today's torch per-block fit (a block of 500 at once), same networks, same threads, alternating; with the
    roofline: matmul GFLOP/s achieved against this machine's fp32 matmul peak at the same thread count."""
    from benchmarks.roofline import machine_peaks

    arch, steps = Architecture.siren(), 20 if quick else 200
    n = 64 if quick else 500
    order = np.random.default_rng(12345).permutation(mnist5k.N_IMAGES)[:n]
    targets, init = mnist5k.inr_targets()[torch.from_numpy(order)], dwsnets_init(arch, list(range(n)))
    out = {"forge.siren_fit.steps": steps, "forge.siren_fit.networks": n}
    if siren_native.fitter(arch) is None:
        print("forge: no native SIREN fitter here (no C compiler); the torch block fit is what builds use")
        return out
    best = {"native": 0.0, "torch_block": 0.0}
    for _ in range(1 if quick else 2):  # alternate, keep each one's best: a busy machine hurts both alike
        t0 = time.perf_counter()
        _, mse_native = fit_inrs_on_grid(arch, init, targets, steps, 1e-3, 28)
        best["native"] = max(best["native"], n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        _, mse_torch = fit_inrs(arch, init, targets, steps, 1e-3, coordinate_grid(28))
        best["torch_block"] = max(best["torch_block"], n / (time.perf_counter() - t0))
    gflop = siren_fit_flops(arch, 28 * 28, steps) / 1e9
    peak = machine_peaks(((784, 32, 32), (2048, 2048, 2048)))["fp32_gflops"]
    psnr = {k: float((10 * torch.log10(1 / m)).mean()) for k, m in (("native", mse_native), ("torch_block", mse_torch))}
    out.update({f"forge.siren_fit.{k}.networks_per_s": v for k, v in best.items()})
    out.update({f"forge.siren_fit.{k}.psnr": v for k, v in psnr.items()})
    out.update({"forge.siren_fit.native_over_torch_block.ratio": best["native"] / best["torch_block"],
                "forge.siren_fit.gflop_per_network": gflop,
                "forge.siren_fit.native.achieved_gflops": gflop * best["native"],
                "forge.siren_fit.peak_fp32_gflops": peak,
                "forge.siren_fit.native.of_peak": gflop * best["native"] / peak,
                "forge.siren_fit.native.networks_per_min": 60 * best["native"],
                "forge.siren_fit.native.minutes_for_70000": 70000 / best["native"] / 60})
    print(f"forge: SIREN fit ({steps} steps, {n} networks, {torch.get_num_threads()} threads): native "
          f"{best['native']:.1f}/s vs torch block {best['torch_block']:.1f}/s = "
          f"{best['native'] / best['torch_block']:.1f}x; PSNR {psnr['native']:.2f} vs {psnr['torch_block']:.2f} dB; "
          f"{gflop:.2f} GFLOP/network -> {gflop * best['native']:.0f} GFLOP/s = "
          f"{gflop * best['native'] / peak:.0%} of the {peak:.0f} GFLOP/s fp32 matmul peak; "
          f"70,000 INRs in {70000 / best['native'] / 60:.1f} min")
    return out


def run(quick: bool = False) -> dict[str, float]:
    out = native_vs_block(quick)
    arch, coords = Architecture.siren(), coordinate_grid(28)
    steps = 30 if quick else 150
    targets = digits.inr_targets()
    batch, single = (64, 2) if quick else (512, 4)
    t0 = time.perf_counter()  # the torch path alone: batched vs one at a time
    fit_inrs(arch, siren_init(arch, list(range(batch))), targets[:batch], steps, 1e-3, coords)
    batched = batch / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(single):
        fit_inrs(arch, siren_init(arch, [i]), targets[i:i + 1], steps, 1e-3, coords)
    one = single / (time.perf_counter() - t0)
    out.update({"forge.inr.steps": steps, "forge.inr.batched.networks_per_s": batched,
                "forge.inr.one_at_a_time.networks_per_s": one, "forge.inr.batched_over_one.ratio": batched / one})

    # the mnist5k-inr recipe as built (the native fitter where it compiles); fmnist-inr goal: >= 4,700 networks/min
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
