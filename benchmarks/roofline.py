"""The encoder training step against this machine's roofline: `python -m benchmarks --only roofline`.

One fresh subprocess (torch's thread count of the parent) measures, in the same run:

- the machine: `roofline.peak.fp32_gflops` / `bf16_gflops` — the best of a few matmuls, including the
  step's own per-edge shape `[B·E, d] @ [d, d]`; `roofline.peak.copy_gbs` — bytes read + written per
  second by a 256 MB copy (memory bandwidth);
- per configuration (`cnn` d = 256 batch 16 and 64; `inr` d = 128 batch 32 and 128) and precision (`fp32`,
  `bf16` = CPU autocast): the step (forward, backward of a scalar loss, AdamW) as `step_s`;
  `gflop` — the matmul FLOPs of the step (torch's FlopCounterMode: mm/bmm/addmm/…; pointwise
  arithmetic is not counted, it is memory-bound); `gbytes` — bytes every aten op reads and writes
  (inputs + outputs, an upper bound of memory traffic: caches absorb part of it); `aten_ops`;
- derived: `achieved_gflops` = gflop / step_s and `of_peak` (fraction of the precision's peak);
  `intensity` = FLOPs per byte; `t_compute_s` = gflop / peak, `t_memory_s` = gbytes / copy
  bandwidth; `bound_s` = their max, `efficiency` = bound_s / step_s (1 = on the roofline).

The ceiling these give for the published-code comparison: at `bound_s` per step the step could reach
`batch / bound_s` networks/s (`roofline_networks_per_s`); `published.<config>` has the reference's
rate measured side by side.
"""
from __future__ import annotations

import os

from ._util import native_bf16, run_child, timed

RUNS = [("cnn", 16), ("cnn", 64), ("inr", 32), ("inr", 128)]


def step_counts(step) -> dict:
    """Matmul FLOPs, bytes read + written by every aten op, and the op count of one call of `step`."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.flop_counter import FlopCounterMode

    class _Bytes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.bytes, self.ops = 0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func._overloadpacket.__name__ in ("view", "_unsafe_view", "t", "transpose", "expand", "as_strided",
                                                  "unsqueeze", "squeeze", "permute", "slice", "select", "alias",
                                                  "detach", "split", "split_with_sizes", "unbind", "reshape",
                                                  "empty", "empty_strided", "empty_like", "new_empty",
                                                  "new_empty_strided"):
                return out  # metadata or allocation only: no bytes move
            self.ops += 1
            for t in tree_flatten((args, kwargs, out))[0]:
                if isinstance(t, torch.Tensor) and t.numel() > 1:
                    # a broadcast (expanded) input is read once per distinct element: at most its storage
                    self.bytes += min(t.numel() * t.element_size(), t.untyped_storage().nbytes())
            return out

    from gmnae.nn import gated_edge_compiled

    # the compiled pointwise chains (d > 64) are opaque to dispatch modes: they count their own inputs and outputs
    gated_edge_compiled.COUNTERS = {"bytes": 0}
    try:
        fc = FlopCounterMode(display=False)
        with fc:
            step()
        gated_edge_compiled.COUNTERS["bytes"] = 0
        mode = _Bytes()
        with mode:
            step()
        fused_bytes = gated_edge_compiled.COUNTERS["bytes"]
    finally:
        gated_edge_compiled.COUNTERS = None
    return {"flops": float(fc.get_total_flops()), "bytes": float(mode.bytes + fused_bytes), "ops": float(mode.ops)}


def machine_peaks(shapes=((2048, 2048, 2048),), dtypes=("fp32", "bf16")) -> dict:
    """Best matmul GFLOP/s per dtype over `shapes` (m, k, n) and the copy bandwidth in GB/s (read + write)."""
    import torch

    out = {}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name not in dtypes:
            continue
        best = 0.0
        for m, k, n in shapes:
            a, b = torch.randn(m, k).to(dt), torch.randn(k, n).to(dt)
            best = max(best, 2 * m * k * n / timed(lambda: a @ b, 5) / 1e9)
        out[f"{name}_gflops"] = best
    x = torch.empty(64 << 20)  # 256 MB: far past every cache
    y = torch.empty_like(x)
    out["copy_gbs"] = 2 * x.nbytes / timed(lambda: y.copy_(x), 5) / 1e9
    return out


def _child(spec: dict) -> dict:
    import torch

    from gmnae.nn import EncoderConfig, ScaleGMNEncoder
    from gmnae.training.optim import adamw
    from gmnae.weightspace import Architecture

    torch.set_num_threads(spec["threads"])
    results: dict[str, float] = {}
    shapes = {(2048, 2048, 2048)}
    nets = {}
    for family, batch in spec["runs"]:
        arch, cfg = (Architecture.small_cnn("relu"), EncoderConfig.cnn()) if family == "cnn" else (Architecture.siren(), EncoderConfig.inr())
        torch.manual_seed(0)
        enc = ScaleGMNEncoder(arch, cfg)
        chunk = min(batch, enc.chunk_size(torch.zeros(1, arch.n_params)) or batch)
        shapes.add((chunk * enc.layout.n_edges, cfg.d, cfg.d))
        nets[(family, batch)] = (arch, enc)
    peaks = machine_peaks(sorted(shapes), spec["precisions"])
    results.update({f"peak.{k}": v for k, v in peaks.items()})
    for (family, batch), (arch, enc) in nets.items():
        opt = adamw(enc.parameters(), "bf16-mixed")
        params = torch.randn(batch, arch.n_params) * 0.1
        for prec in spec["precisions"]:
            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    z = enc(params)
                z.float().square().mean().backward()
                opt.step()

            t = timed(step)
            c = step_counts(step)
            key = f"{family}.b{batch}.{prec}"
            peak = peaks[f"{prec}_gflops"]
            t_c, t_m = c["flops"] / 1e9 / peak, c["bytes"] / 1e9 / peaks["copy_gbs"]
            results.update({
                f"{key}.step_s": t, f"{key}.networks_per_s": batch / t, f"{key}.gflop": c["flops"] / 1e9,
                f"{key}.gbytes": c["bytes"] / 1e9, f"{key}.aten_ops": c["ops"],
                f"{key}.achieved_gflops": c["flops"] / 1e9 / t, f"{key}.of_peak": c["flops"] / 1e9 / t / peak,
                f"{key}.intensity": c["flops"] / max(c["bytes"], 1.0), f"{key}.t_compute_s": t_c,
                f"{key}.t_memory_s": t_m, f"{key}.bound_s": max(t_c, t_m), f"{key}.efficiency": max(t_c, t_m) / t,
                f"{key}.roofline_networks_per_s": batch / max(t_c, t_m),
            })
    return results


def run(quick: bool = False) -> dict[str, float]:
    import torch

    precisions = ("fp32", "bf16") if native_bf16("roofline") else ("fp32",)
    spec = {"threads": torch.get_num_threads(), "runs": RUNS[:1] if quick else RUNS, "precisions": precisions}
    got, load = run_child("roofline", spec)
    out = {f"roofline.{k}": v for k, v in got.items()}
    out["roofline.threads"] = float(spec["threads"])
    out["roofline.loadavg_1min"] = load
    for family, batch in spec["runs"]:
        for prec in precisions:
            k = f"roofline.{family}.b{batch}.{prec}"
            print(f"  {family}.b{batch}.{prec}: {out[k + '.step_s'] * 1e3:7.0f} ms/step ({out[k + '.networks_per_s']:.1f} networks/s); "
                  f"{out[k + '.gflop']:.1f} GFLOP at {out[k + '.achieved_gflops']:.0f} GFLOP/s = {out[k + '.of_peak']:.0%} of peak; "
                  f"{out[k + '.gbytes']:.1f} GB touched; compute {out[k + '.t_compute_s'] * 1e3:.0f} ms, memory "
                  f"{out[k + '.t_memory_s'] * 1e3:.0f} ms -> {out[k + '.efficiency']:.0%} of the roofline", flush=True)
    return out
