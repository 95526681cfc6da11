"""The published ScaleGMN code (Kalogeropoulos et al., github.com/jkalogero/scalegmn) run side by side with
our dense encoder: `python -m benchmarks --only published --reference /path/to/scalegmn [--pyg DIR]`.

Nothing here is part of the installed package. The reference needs `torch_geometric`; where the
checkout (`--reference` or `GMNAE_SCALEGMN_REFERENCE`) or torch_geometric (importable, or in the
folder `--pyg` / `GMNAE_PYG_PATH`) is missing the section says so in one line and returns nothing
(CI has neither). The reference's modules import einops, rff, torchvision, nfn, cv2, sklearn at the
top for INR evaluation and data loading, which the encoder step never calls: where those are absent
they are replaced by empty stand-ins (`_stub_unused_imports`).

One subprocess per configuration builds both encoders with the same width, depth and batch and
runs one training step each (forward, backward of a scalar loss on the output, AdamW step: ours torch's fused
AdamW as `gmnae train` runs it, the reference's the default one its scripts build), ALTERNATING ours and the
reference's, so that a busy spell of the shared machine hits both alike;
both run on the same torch thread count. Figures (best step of each):

- `published.<config>.b<batch>.{ours,ours_bf16,reference}.networks_per_s`, `...ratio` = ours / reference
  (both fp32) and `...bf16_over_reference.ratio` (ours under bf16 autocast, the reference in fp32; only on a CPU
  with native bf16 matmuls, `published.bf16_native`: elsewhere bf16 is emulated and `auto` precision runs fp32);
- `...fp32_ceiling_x`: this machine's fp32 matmul peak (`peak_fp32_gflops`, measured in the child) over our
  matmul GFLOP per network over the reference's networks/s: our fp32 step's best possible ratio here;
- at the small batch of each configuration, per network: `{ours,reference}.gflop_per_network` (matmul
  FLOPs of the step), `gbytes_per_network` (bytes every op reads and writes) and `achieved_gflops`
  (see `benchmarks/roofline.py`, which sets them against this machine's measured peaks);
- configurations: `cnn` (Small CNN, d = 256, 4 layers, hetero symmetry on ReLU networks: the
  published CIFAR-10 configuration `configs/cifar10/scalegmn_hetero.yml` with d raised to ours), at batch
  16 and the published 64; `inr` (SIREN 2-32-32-1, d = 128, 4 layers, sign symmetry:
  `configs/mnist_cls/scalegmn.yml`) at batch 32 and the published 128 (not in `--quick`).
- the reference's input graphs are built once, outside the timed step (its data loader's work);
- `...ours.compile_s`: seconds our first fp32 and bf16 steps spent in torch.compile of the per-edge step
  (gated_edge_compiled, d > 64; less when Inductor's on-disk cache has it), `...ours.first_steps_s` those two
  steps' wall time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._util import native_bf16

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {  # name: (reference config, our EncoderConfig factory, d)
    "cnn": ("configs/cifar10/scalegmn_hetero.yml", "cnn", 256),
    "inr": ("configs/mnist_cls/scalegmn.yml", "inr", 128),
}


def reference_paths() -> tuple[Path | None, str | None, str]:
    """(reference checkout, extra sys.path entry for torch_geometric, why not) from the environment."""
    ref = os.environ.get("GMNAE_SCALEGMN_REFERENCE")
    if not ref:
        return None, None, "no reference checkout (pass --reference DIR or set GMNAE_SCALEGMN_REFERENCE)"
    ref_path = Path(ref)
    if not (ref_path / "src" / "scalegmn" / "models.py").exists():
        return None, None, f"{ref_path} is not a ScaleGMN checkout (no src/scalegmn/models.py)"
    pyg = os.environ.get("GMNAE_PYG_PATH") or None
    code = "import torch_geometric"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pyg, os.environ.get("PYTHONPATH")])))
    if subprocess.run([sys.executable, "-c", code], env=env, capture_output=True).returncode != 0:
        return None, None, "torch_geometric is not importable (install it, or pass --pyg DIR where it is installed)"
    return ref_path, pyg, ""


_STUBBED = ("einops", "rff", "torchvision", "nfn", "cv2", "sklearn", "wandb")


def _stub_unused_imports() -> None:
    """The reference's model and data modules import these at the top for INR evaluation, images and data
    loading, which the encoder step never calls: empty stand-ins (any attribute is a placeholder) where absent."""
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import types

    missing = {m for m in _STUBBED if importlib.util.find_spec(m) is None}

    class _Stub(types.ModuleType):
        __path__: list = []

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in missing:
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return _Stub(spec.name)

        def exec_module(self, module):
            pass

    sys.meta_path.append(_Finder())


def _reference_model(ref: Path, family: str, d: int, layer_layout: list[int]):
    import yaml

    sys.path.insert(0, str(ref))
    _stub_unused_imports()
    from src.scalegmn.models import ScaleGMN  # noqa: E402  (the reference checkout)

    conf = yaml.safe_load(open(ref / CONFIGS[family][0]))
    args = conf["scalegmn_args"]
    args["layer_layout"] = layer_layout
    args["d_hid"] = d
    args["graph_init"]["d_node"] = args["graph_init"]["d_edge"] = d
    args["gnn_args"]["d_hid"] = d
    args["mlp_args"]["d_k"] = [d]
    args["readout_args"]["d_rho"] = d
    args["readout_args"]["d_out"] = d  # a latent of our width (the published heads are 1 / 10 wide)
    return ScaleGMN(args), conf


def _reference_graphs(family: str, batch: int, conf: dict, seed: int = 0):
    """A torch_geometric Batch of `batch` random networks, built the way the reference's datasets do."""
    import torch
    from torch_geometric.data import Batch, Data

    from src.data.cifar10_dataset import cnn_to_graph
    from src.data.data_utils import get_edge_types, get_node_types, nn_to_edge_index

    gen = torch.Generator().manual_seed(seed)
    args = conf["scalegmn_args"]
    gnn = args["gnn_args"]
    hidden = gnn["msg_equiv_on_hidden"] or gnn["upd_equiv_on_hidden"]
    first = gnn["msg_num_mlps"] == 3 or gnn["upd_num_mlps"] == 3
    layout = args["layer_layout"]
    n = sum(layout)
    mask_hidden = torch.tensor([False] * layout[0] + [True] * (n - layout[0] - layout[-1]) + [False] * layout[-1]).unsqueeze(-1)
    mask_first = torch.tensor([True] * layout[0] + [False] * (n - layout[0])).unsqueeze(-1)
    extra = {}
    if conf["data"].get("node_pos_embed"):
        extra["node2type"] = get_node_types(layout)
    if conf["data"].get("edge_pos_embed"):
        extra["edge2type"] = get_edge_types(layout)
    if hidden:
        extra["mask_hidden"] = mask_hidden
    if first:
        extra["mask_first_layer"] = mask_first
    data = []
    for _ in range(batch):
        if family == "cnn":  # Small CNN: three 3x3 convs, then a linear layer; [in, out, k] as NFNZooDataset gives them
            ws = [torch.randn(a, b, 9 if i < 3 else 1, generator=gen) * 0.1 for i, (a, b) in enumerate(zip(layout[:-1], layout[1:]))]
            bs = [torch.randn(b, 1, generator=gen) * 0.1 for b in layout[1:]]
            x, e, masks, adj = cnn_to_graph(ws, bs)
            ei = adj.nonzero().t()
            data.append(Data(x=x, edge_attr=e[ei[0], ei[1]], edge_index=ei, mlp_edge_masks=masks[ei[0], ei[1]],
                             sign_mask=False, **extra))
        else:  # an INR: [in, out, 1] weights, input nodes' state 1 (base_datasets.batch_to_graphs)
            ws = [torch.randn(a, b, 1, generator=gen) * 0.1 for a, b in zip(layout[:-1], layout[1:])]
            x = torch.cat([torch.ones(layout[0], 1)] + [torch.randn(b, 1, generator=gen) * 0.1 for b in layout[1:]])
            e = torch.zeros(n, n, 1)
            r, c = 0, layout[0]
            for w in ws:
                e[r:r + w.shape[0], c:c + w.shape[1]] = w
                r, c = r + w.shape[0], c + w.shape[1]
            ei = nn_to_edge_index(layout, "cpu")
            data.append(Data(x=x, edge_attr=e[ei[0], ei[1]], edge_index=ei, **extra))
    return Batch.from_data_list(data)


def _child(spec: dict) -> dict:
    """In a subprocess: both encoders, alternating steps; best step time of each."""
    import time

    import torch

    from gmnae.nn import EncoderConfig, ScaleGMNEncoder, gated_edge_compiled
    from gmnae.training.optim import adamw
    from gmnae.weightspace import Architecture

    torch.set_num_threads(spec["threads"])
    family, batch = spec["family"], spec["batch"]
    if family == "cnn":
        arch, cfg, layout = Architecture.small_cnn("relu"), EncoderConfig.cnn(), [1, 16, 16, 16, 10]
    else:
        arch, cfg, layout = Architecture.siren(), EncoderConfig.inr(), [2, 32, 32, 1]
    torch.manual_seed(0)
    ours = ScaleGMNEncoder(arch, cfg)
    ref, conf = _reference_model(Path(spec["reference"]), family, cfg.d, layout)
    params = torch.randn(batch, arch.n_params) * 0.1
    graphs = _reference_graphs(family, batch, conf)
    # each side's optimiser as its training runs it: ours as gmnae.training.optim builds it (torch's fused AdamW
    # on CPU), the reference's as its training scripts call it (torch.optim.AdamW, defaults)
    opts = {"ours": adamw(ours.parameters(), "bf16-mixed"),
            "reference": torch.optim.AdamW(ref.parameters(), lr=1e-3, weight_decay=0.01)}
    ours.train(), ref.train()

    def step(which: str) -> float:
        net = "reference" if which == "reference" else "ours"
        opt = opts[net]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=which == "ours_bf16"):
            out = ours(params) if net == "ours" else ref(graphs.clone())
        out.float().square().mean().backward()
        opt.step()
        return time.perf_counter() - t0

    sides = ("ours", "ours_bf16", "reference") if spec["bf16"] else ("ours", "reference")
    best = {w: float("inf") for w in sides}
    t0 = time.perf_counter()
    step("ours")
    if spec["bf16"]:
        step("ours_bf16")
    warm_ours = time.perf_counter() - t0  # includes torch.compile of the per-edge step (gated_edge_compiled)
    step("reference")
    for _ in range(spec["reps"]):
        for w in sides:
            best[w] = min(best[w], step(w))
    out = {f"{w}_step_s": best[w] for w in sides}
    out["ours_compile_s"] = sum(gated_edge_compiled.COMPILE_SECONDS.values())
    out["ours_first_steps_s"] = warm_ours
    out["ours_params"] = sum(p.numel() for p in ours.parameters())
    out["reference_params"] = sum(p.numel() for p in ref.parameters())
    if spec.get("count"):  # matmul FLOPs and bytes touched per step (benchmarks/roofline.py)
        from benchmarks.roofline import step_counts

        for w in ("ours", "reference"):
            c = step_counts(lambda: step(w))
            out[f"{w}_gflop"], out[f"{w}_gbytes"] = c["flops"] / 1e9, c["bytes"] / 1e9
        # this machine's fp32 matmul peak (the step's own per-edge shape among the candidates): with our FLOPs at
        # that rate the step could not beat `fp32_ceiling_x` times the reference
        from benchmarks.roofline import machine_peaks

        chunk = min(batch, ours.chunk_size(params) or batch)
        out["peak_fp32_gflops"] = machine_peaks([(2048, 2048, 2048), (chunk * ours.layout.n_edges, cfg.d, cfg.d)],
                                                dtypes=("fp32",))["fp32_gflops"]
    return out


def _measure(spec: dict, pyg: str | None) -> dict:
    code = ("import json,sys; from benchmarks.published import _child; "
            "print('RESULT', json.dumps(_child(json.loads(sys.argv[1]))))")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH"), pyg]))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True, cwd=ROOT, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"published-encoder child failed ({spec}):\n{proc.stderr[-3000:]}")


def run(quick: bool = False) -> dict[str, float]:
    import torch

    ref, pyg, why = reference_paths()
    if ref is None:
        print(f"  published: skipped: {why}", flush=True)
        return {}
    out: dict[str, float] = {}
    threads = torch.get_num_threads()
    out["published.threads"] = float(threads)
    bf16 = native_bf16("published")
    out["published.bf16_native"] = float(bf16)
    gflop_per_network, peak = {}, {}  # per family, from its small batch (FLOPs per network do not depend on it)
    runs = [("cnn", 16), ("cnn", 64)] if quick else [("cnn", 16), ("cnn", 64), ("inr", 32), ("inr", 128)]
    for family, batch in runs:
        load0 = os.getloadavg()[0]
        count = batch <= 32  # FLOPs and bytes grow linearly with the batch: counted at the small one
        r = _measure({"family": family, "batch": batch, "threads": threads, "reps": 2 if quick or batch > 32 else 3,
                      "reference": str(ref), "count": count, "bf16": bf16}, pyg)
        key = f"published.{family}.b{batch}"
        ours, theirs = batch / r["ours_step_s"], batch / r["reference_step_s"]
        out[f"{key}.ours.networks_per_s"] = ours
        out[f"{key}.reference.networks_per_s"] = theirs
        out[f"{key}.ratio"] = ours / theirs
        if bf16:
            out[f"{key}.ours_bf16.networks_per_s"] = batch / r["ours_bf16_step_s"]
            out[f"{key}.bf16_over_reference.ratio"] = out[f"{key}.ours_bf16.networks_per_s"] / theirs
        out[f"{key}.ours.params"], out[f"{key}.reference.params"] = float(r["ours_params"]), float(r["reference_params"])
        out[f"{key}.ours.compile_s"], out[f"{key}.ours.first_steps_s"] = r["ours_compile_s"], r["ours_first_steps_s"]
        extra = ""
        if count:
            for w in ("ours", "reference"):
                out[f"{key}.{w}.gflop_per_network"] = r[f"{w}_gflop"] / batch
                out[f"{key}.{w}.gbytes_per_network"] = r[f"{w}_gbytes"] / batch
                out[f"{key}.{w}.achieved_gflops"] = r[f"{w}_gflop"] / r[f"{w}_step_s"]
            gflop_per_network[family], peak[family] = out[f"{key}.ours.gflop_per_network"], r["peak_fp32_gflops"]
            out[f"{key}.peak_fp32_gflops"] = peak[family]
            extra = (f"; GFLOP/network {out[f'{key}.ours.gflop_per_network']:.2f} vs "
                     f"{out[f'{key}.reference.gflop_per_network']:.2f}, achieved {out[f'{key}.ours.achieved_gflops']:.0f} vs "
                     f"{out[f'{key}.reference.achieved_gflops']:.0f} GFLOP/s (fp32 peak {peak[family]:.0f})")
        if family in peak:
            # our fp32 step's matmuls alone at this machine's peak: no fp32 step of this model can beat it here
            out[f"{key}.fp32_ceiling_x"] = peak[family] / gflop_per_network[family] / theirs
            extra += f"; fp32 ceiling {out[f'{key}.fp32_ceiling_x']:.1f}x"
        out[f"{key}.loadavg_1min"] = max(load0, os.getloadavg()[0])
        bf16_part = (f" (bf16 {out[f'{key}.ours_bf16.networks_per_s']:7.1f})" if bf16 else "")
        bf16_ratio = (f" (bf16 {out[f'{key}.bf16_over_reference.ratio']:5.1f}x)" if bf16 else "")
        print(f"  {key:<16} ours {ours:7.1f}{bf16_part}  reference {theirs:6.2f} networks/s  = {ours / theirs:5.1f}x"
              f"{bf16_ratio}; params {r['ours_params']:,} vs {r['reference_params']:,}{extra}; "
              f"compile {r['ours_compile_s']:.0f} s; load {out[f'{key}.loadavg_1min']:.2f}", flush=True)
    return out
