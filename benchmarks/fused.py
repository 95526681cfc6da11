"""The fused per-edge step (`gmnae/nn/gated_edge.c`) against the torch ops it replaces: `python -m benchmarks --only fused`.

The `scalegmn-small` model (gmnae/configs/model/scalegmn-small.yaml: d = 32, 3 layers, latent 64; what CPU
users train) on the digits-cnn architecture, batch 64 networks alternating ReLU / tanh (hetero symmetry:
per-network sign flags). Variants, each measured with `edge_kernel="torch"` (`_GatedEdge` and torch ops:
before) and `"auto"` (the native gate and edge update: after), the two models built from one seed and their
steps alternating in one fresh subprocess (torch's thread count of the parent), best of `reps`:

- `encoder.dense.fp32`, `encoder.dense.bf16` (CPU autocast), `encoder.edge.fp32`: the encoder's training
  step (forward, backward of a scalar loss on the latent, AdamW);
- `train.dense.fp32`: the whole training step of the autoencoder (encoder + function probe + MLP decoder +
  the distillation loss through the decoded CNNs on 64 images, backward, AdamW).

Keys `fused.<variant>.<torch|native>.step_ms`, `fused.<variant>.speedup.ratio` (torch / native step time),
and the roofline of each (as `benchmarks/roofline.py`): `gflop` (matmul FLOPs: torch's FlopCounterMode plus
the native kernels' matvecs, the backward recomputing one), `gbytes` (bytes every aten op reads and writes
plus each native kernel's distinct inputs read once and outputs written once), `efficiency` = max(gflop /
peak, gbytes / copy bandwidth) / step (1 = on the roofline). `fused.build_s`: compiling the float32 d = 32
kernel into an empty cache (once per machine: later runs load it from `$GMNAE_CACHE_DIR/native`, `fused.load_s`).
"""
from __future__ import annotations

import os

from ._util import run_child

VARIANTS = [("encoder", "dense", "fp32"), ("encoder", "dense", "bf16"), ("encoder", "edge", "fp32"),
            ("train", "dense", "fp32")]


def _model(kind: str, path: str, kernel: str):
    import torch

    from gmnae.nn import EncoderConfig, ScaleGMNEncoder
    from gmnae.weightspace import ACTIVATIONS, Architecture

    arch = Architecture.small_cnn("relu", padding="same", image_size=(8, 8))  # digits-cnn-relu
    enc = dict(d=32, n_layers=3, symmetry="hetero", path=path, dropout=0.0, latent_dim=64, edge_kernel=kernel)
    torch.manual_seed(0)
    B = 64
    params = torch.randn(B, arch.n_params, generator=torch.Generator().manual_seed(1)) * 0.1
    codes = torch.tensor([ACTIVATIONS.index("relu"), ACTIVATIONS.index("tanh")] * (B // 2))
    if kind == "encoder":
        model = ScaleGMNEncoder(arch, EncoderConfig(**enc))
        loss_fn = lambda prec: model(params, activation=codes).float().square().mean()
    else:
        from gmnae.training.autoencoder import WeightSpaceAutoencoder
        from gmnae.training.losses import distillation_kl

        mixed = dict(arch.to_dict(), activation="mixed")
        model = WeightSpaceAutoencoder(mixed, "cnn", dict(enc, input_scale="layer-rms"),
                                       {"type": "mlp", "hidden": [128, 256], "standardize": True}, {"lr": 1e-3},
                                       {"temperature": 4.0, "task_batch": 64}, probe={"points": 64, "hidden": 128})
        images = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
        loss_fn = lambda prec: distillation_kl(model.arch, params, model(params, codes).float(), images, 4.0,
                                               model._activation(codes))[0].mean()
    from gmnae.training.optim import adamw

    opt = adamw(model.parameters(), "32-true", lr=1e-4)

    def step(prec):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
            loss = loss_fn(prec)
        loss.backward()
        opt.step()

    return step


def _child(spec: dict) -> dict:
    import shutil
    import tempfile
    import time

    import torch

    from benchmarks.roofline import machine_peaks, step_counts
    from gmnae.nn import gated_edge_native as native

    torch.set_num_threads(spec["threads"])
    out: dict[str, float] = {}
    # compile time: the kernel built into an empty cache, then loaded from it
    tmp = tempfile.mkdtemp(prefix="gmnae-fused-")
    try:
        os.environ["GMNAE_CACHE_DIR"] = tmp
        t0 = time.perf_counter()
        ok = native._build(torch.float32, 32) is not None
        out["fused.build_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        native._build(torch.float32, 32)
        out["fused.load_s"] = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.environ.pop("GMNAE_CACHE_DIR", None)
        if spec.get("cache_dir"):
            os.environ["GMNAE_CACHE_DIR"] = spec["cache_dir"]
    if not ok or native.library(torch.float32, 32) is None:
        raise RuntimeError("the native kernels did not build (a C compiler is needed)")
    peaks = machine_peaks(((2048, 2048, 2048), (64 * 688, 32, 32)))
    out.update({f"fused.peak.{k}": v for k, v in peaks.items()})
    for kind, path, prec in spec["variants"]:
        key = f"fused.{kind}.{path}.{prec}"
        steps = {k: _model(kind, path, k) for k in ("torch", "auto")}
        for s in steps.values():  # warm-up
            s(prec)
        best = {k: float("inf") for k in steps}
        for _ in range(spec["reps"]):
            for k, s in steps.items():
                t0 = time.perf_counter()
                s(prec)
                best[k] = min(best[k], time.perf_counter() - t0)
        for k, s in steps.items():
            name = "native" if k == "auto" else "torch"
            native.COUNTERS = {"flops": 0.0, "bytes": 0.0}
            s(prec)
            kern = native.COUNTERS
            native.COUNTERS = None
            c = step_counts(lambda: s(prec))
            flops, nbytes = c["flops"] + kern["flops"], c["bytes"] + kern["bytes"]
            t_c, t_m = flops / (peaks[f"{prec}_gflops"] * 1e9), nbytes / (peaks["copy_gbs"] * 1e9)
            out.update({f"{key}.{name}.step_ms": best[k] * 1e3, f"{key}.{name}.gflop": flops / 1e9,
                        f"{key}.{name}.gbytes": nbytes / 1e9, f"{key}.{name}.bound_ms": max(t_c, t_m) * 1e3,
                        f"{key}.{name}.efficiency": max(t_c, t_m) / best[k]})
        out[f"{key}.speedup.ratio"] = best["torch"] / best["auto"]
    return out


def run(quick: bool = False) -> dict[str, float]:
    import torch

    spec = {"threads": torch.get_num_threads(), "reps": 3 if quick else 6,
            "variants": VARIANTS[:1] + VARIANTS[3:] if quick else VARIANTS,
            "cache_dir": os.environ.get("GMNAE_CACHE_DIR")}
    out, load = run_child("fused", spec)
    out["fused.threads"] = float(spec["threads"])
    out["fused.loadavg_1min"] = load
    for kind, path, prec in spec["variants"]:
        k = f"fused.{kind}.{path}.{prec}"
        print(f"  {kind}.{path}.{prec}: torch {out[k + '.torch.step_ms']:6.1f} ms "
              f"({out[k + '.torch.efficiency']:.0%} of its roofline) -> native {out[k + '.native.step_ms']:6.1f} ms "
              f"({out[k + '.native.efficiency']:.0%}): {out[k + '.speedup.ratio']:.2f}x", flush=True)
    return out
