"""Full training-step throughput (encoder + decoder + functional loss + backward + AdamW).

Published sizes: INR d=128, 4 layers, batch 128; CNN d=256, 4 layers, batch 64 (64 task images).
The baseline measured in the same run is the edge-list path (the published code's form).
`training.small.<family>.bf16_over_fp32.ratio`: the `scalegmn-small` step (d=32, 3 layers, batch 64; SIREN and
the mnist5k-cnn architecture) under bf16 autocast against fp32, alternating steps on one thread: the measurement
behind `trainer.precision: auto`'s width threshold (gmnae/commands/trainer_setup.py).
"""
from __future__ import annotations

import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.tasks import digits
from gmnae.weightspace import Architecture
from gmnae.weightspace.architecture import named_architecture
from ._util import max_rss_mb, timed

CONFIGS = {
    "inr": (Architecture.siren(), 128, dict(d=128, n_layers=4, latent_dim=128, dropout=0.2), [256, 512]),
    "cnn": (Architecture.small_cnn("relu", padding="same", image_size=(8, 8)), 64,
            dict(d=256, n_layers=4, latent_dim=256, dropout=0.2), [512, 1024]),
}


SMALL = {"inr": (Architecture.siren(), 64, dict(d=32, n_layers=3, latent_dim=64, dropout=0.0), [128, 256]),
         "cnn": (named_architecture("mnist5k-cnn-relu"), 64, dict(d=32, n_layers=3, latent_dim=64, dropout=0.0),
                 [128, 256])}


def _step_fn(family: str, path: str, device: str, configs: dict = CONFIGS, bf16: bool = False):
    arch, batch, enc, hidden = configs[family]
    model = WeightSpaceAutoencoder(arch.to_dict(), family, {**enc, "path": path}, {"type": "mlp", "hidden": hidden},
                                   {"lr": 1e-3}, {"temperature": 4.0, "task_batch": 64},
                                   task={"name": "digits", "split_seed": 0}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    params = torch.randn(batch, arch.n_params, device=device) * 0.1
    if family == "cnn" and tuple(arch.image_size) != (8, 8):
        x = torch.rand(64, arch.layers[0].n_in, *arch.image_size, device=device)
    else:
        x, _ = digits.classification_images("train")
        x = x[:64].to(device)

    def step():
        from gmnae.training.losses import distillation_kl, inr_render_mse

        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            decoded = model(params)
            if family == "inr":
                loss = inr_render_mse(arch, params, decoded, model.coords).mean()
            else:
                loss = distillation_kl(arch, params, decoded, x, 4.0)[0].mean()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step, batch


def run(quick: bool = False) -> dict[str, float]:
    out = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for family in CONFIGS:
            rates = {}
            for path in ("dense", "edge"):
                if quick and path == "edge":
                    continue
                step, batch = _step_fn(family, path, device)
                sec = timed(step, repeat=2 if quick else 3)
                rates[path] = batch / sec
                out[f"training.{family}.{path}.{device}.networks_per_s"] = rates[path]
                out[f"training.{family}.{path}.{device}.step_ms"] = sec * 1e3
            if "edge" in rates:
                out[f"training.{family}.{device}.dense_over_edge.ratio"] = rates["dense"] / rates["edge"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for family in SMALL:
            steps = {bf16: _step_fn(family, "dense", "cpu", SMALL, bf16)[0] for bf16 in (False, True)}
            best = {False: float("inf"), True: float("inf")}
            for s in steps.values():
                s()
            for _ in range(2 if quick else 5):  # alternating: both precisions see the same machine load
                for bf16, s in steps.items():
                    best[bf16] = min(best[bf16], timed(s, repeat=1, warmup=0))
            out[f"training.small.{family}.fp32.step_ms"] = best[False] * 1e3
            out[f"training.small.{family}.bf16.step_ms"] = best[True] * 1e3
            out[f"training.small.{family}.bf16_over_fp32.ratio"] = best[False] / best[True]
    finally:
        torch.set_num_threads(threads)
    out["training.max_rss_mb"] = max_rss_mb()
    return out
