"""ScaleGMN encoder throughput: `python -m benchmarks --only encoder` (add `--quick` for a smoke run).

One training step of the encoder alone: forward, backward of a scalar loss on the latent, AdamW step.
Configurations of the published models (docs/design.md §4):

- `inr`: SIREN 2-32-32-1 (1,185 parameters), batch 128, d = 128, 4 layers, sign symmetry;
- `cnn`: Small CNN (4,970 parameters), batch 64, d = 256, 4 layers, hetero symmetry (ReLU networks -> scale).

Keys `encoder.<config>.<variant>.<device>.networks_per_s` and `...peak_mem_mb`. Variants:
`dense` (the default path: cache-sized chunks of networks on CPU), `edge` (edge list + scatter sums,
native `index_add_`; `edge_torch_scatter` when torch_scatter is installed), and in full runs
`dense_unchunked` (one big batch), `dense_bidir` (bidirectional messages), `dense_compiled`
(`compile=True`, torch.compile; its one-off compile time is `...compile_s`).
Ratios: `dense_over_edge`, `torch_scatter_over_native` (edge path), `compiled_over_eager`, and
`...vs_published_<N>nets_per_s.ratio` against the published implementation's throughput.

The published code measured side by side, in the same process and on the same threads, is the
`published` section (benchmarks/published.py; it needs a checkout of the reference). The figures below
are REFERENCE figures quoted from the issue, NOT measured in this run: about 5
networks/s on this repository's 2-core CPU machines for the INR config at batch 128 (24.9 s per step,
11 GB), about 770 networks/s on an H200 (166 ms per step) for the INR config and 31 ms per step for the
CNN config at batch 64 (~2,065 networks/s).

Every variant runs in a fresh subprocess (so peak memory is its own: CPU = peak RSS growth during the
steps, CUDA = `torch.cuda.max_memory_allocated`), warm-up step first, then the best of several steps.
`encoder.cpu.loadavg_1min` records how busy the machine was (a shared machine slows every figure).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PUBLISHED = {("inr", "cpu"): 5.0, ("inr", "cuda"): 770.0, ("cnn", "cuda"): 2065.0}


def _child(spec: dict) -> dict:
    """Runs in the subprocess: build, warm up, time `spec["reps"]` steps, report rate and memory."""
    import resource
    import time

    import torch

    from gmnae.nn import EncoderConfig, ScaleGMNEncoder, scatter_backend
    from gmnae.weightspace import Architecture

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    if spec["family"] == "inr":
        arch, batch, cfg = Architecture.siren(), 128, EncoderConfig.inr()
    else:
        arch, batch, cfg = Architecture.small_cnn("relu"), 64, EncoderConfig.cnn()
    for k, v in spec["cfg"].items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    enc = ScaleGMNEncoder(arch, cfg).to(device)
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-3, weight_decay=0.01)
    params = torch.randn(batch, arch.n_params, device=device) * 0.1

    def step():
        opt.zero_grad(set_to_none=True)
        enc(params).square().mean().backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with scatter_backend(spec.get("backend", "auto")):
        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        best = float("inf")
        for _ in range(spec["reps"]):
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
    if device == "cuda":
        mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024.0
    return {"networks_per_s": batch / best, "step_s": best, "first_step_s": first, "peak_mem_mb": mem}


def _measure(spec: dict) -> dict:
    code = "import json,sys; from benchmarks.encoder import _child; print('RESULT', json.dumps(_child(json.loads(sys.argv[1]))))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])  # the repository root: `benchmarks` importable
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"encoder bench child failed ({spec}):\n{proc.stderr[-3000:]}")


def run(quick: bool = False) -> dict[str, float]:
    import torch

    from gmnae.nn import has_torch_scatter

    out: dict[str, float] = {}
    try:
        out["encoder.cpu.loadavg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    threads = torch.get_num_threads()
    reps = 2 if quick else 4
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for family in ("inr", "cnn"):
            variants = {"dense": {}, "edge": {"path": "edge", "backend": "native"}}
            if has_torch_scatter():
                variants["edge_torch_scatter"] = {"path": "edge", "backend": "torch_scatter"}
            if not quick:
                variants["dense_bidir"] = {"bidirectional": True}
                if device == "cpu":
                    variants["dense_unchunked"] = {"chunk_size": 0}
                variants["dense_compiled"] = {"compile": True}
            rates = {}
            for name, v in variants.items():
                v = dict(v)
                backend = v.pop("backend", "auto")
                spec = {"family": family, "device": device, "threads": threads, "reps": reps, "cfg": v,
                        "backend": backend}
                try:
                    r = _measure(spec)
                except RuntimeError as e:  # e.g. torch.compile without a working compiler: report, go on
                    print(f"  {family}.{name}.{device}: failed: {str(e).splitlines()[-1]}", flush=True)
                    continue
                rates[name] = r["networks_per_s"]
                key = f"encoder.{family}.{name}.{device}"
                out[f"{key}.networks_per_s"] = r["networks_per_s"]
                out[f"{key}.peak_mem_mb"] = r["peak_mem_mb"]
                if name == "dense_compiled":
                    out[f"{key}.compile_s"] = r["first_step_s"]
                print(f"  {key:<48} {r['networks_per_s']:8.1f} networks/s  {r['step_s'] * 1e3:8.0f} ms/step  "
                      f"{r['peak_mem_mb']:8.0f} MB", flush=True)
            suffix = "" if device == "cpu" else f".{device}"
            if "dense" in rates and "edge" in rates:
                out[f"encoder.{family}.dense_over_edge{suffix}.ratio"] = rates["dense"] / rates["edge"]
            if "edge_torch_scatter" in rates and "edge" in rates:
                out[f"encoder.{family}.torch_scatter_over_native{suffix}.ratio"] = rates["edge_torch_scatter"] / rates["edge"]
            if "dense_compiled" in rates and "dense" in rates:
                out[f"encoder.{family}.compiled_over_eager{suffix}.ratio"] = rates["dense_compiled"] / rates["dense"]
            ref = PUBLISHED.get((family, device))
            if ref:
                for name in ("dense", "dense_compiled"):
                    if name in rates:
                        out[f"encoder.{family}.{name}.{device}.vs_published_{ref:g}nets_per_s.ratio"] = rates[name] / ref
    return out
