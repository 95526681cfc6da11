"""Full training-step throughput (encoder + decoder + functional loss + backward + AdamW).

Published sizes: INR d=128, 4 layers, batch 128; CNN d=256, 4 layers, batch 64 (64 task images).
The baseline measured in the same run is the edge-list path (the published code's form).
"""
from __future__ import annotations

import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.tasks import digits
from gmnae.weightspace import Architecture
from ._util import max_rss_mb, timed

CONFIGS = {
    "inr": (Architecture.siren(), 128, dict(d=128, n_layers=4, latent_dim=128, dropout=0.2), [256, 512]),
    "cnn": (Architecture.small_cnn("relu", padding="same", image_size=(8, 8)), 64,
            dict(d=256, n_layers=4, latent_dim=256, dropout=0.2), [512, 1024]),
}


def _step_fn(family: str, path: str, device: str):
    arch, batch, enc, hidden = CONFIGS[family]
    model = WeightSpaceAutoencoder(arch.to_dict(), family, {**enc, "path": path}, {"type": "mlp", "hidden": hidden},
                                   {"lr": 1e-3}, {"temperature": 4.0, "task_batch": 64},
                                   task={"name": "digits", "split_seed": 0}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    params = torch.randn(batch, arch.n_params, device=device) * 0.1
    x, _ = digits.classification_images("train")
    x = x[:64].to(device)

    def step():
        from gmnae.training.losses import distillation_kl, inr_render_mse

        opt.zero_grad(set_to_none=True)
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
    out["training.max_rss_mb"] = max_rss_mb()
    return out
