"""Can an encoder read the image out of an INR's weights? Regress the rendering's top-K principal
components from the weights and report the test PSNR of the implied reconstruction.

    python -m experiments.decoder_or_encoder.image_regression zoo/mnist5k-inr [--encoder scalegmn|mlp] [--k 32] [--epochs 20]

No decoder and no rendering in the loop: the target is the (whitened) PCA code of each network's own
rendering, fitted on the train split; the reconstruction is mean + code · basis. Its PSNR is capped
by the PCA-K ceiling of `experiments/ae_ceilings/ceilings.py` (18.4 dB for K = 32 on mnist5k-inr); an encoder that
gets close reads the image from the weights, and an autoencoder built on it has what +6 dB needs.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn
from experiments.rendering_pca import RenderingPCA, load_renderings

from gmnae.nn import EncoderConfig, ScaleGMNEncoder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("--encoder", default="scalegmn", choices=("scalegmn", "mlp"))
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--input-scale", default="layer-rms")
    ap.add_argument("--latent-norm", default="none", choices=("none", "batch"),
                    help="batch: standardise each latent feature over the batch before the head")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    zoo, p, t = load_renderings(a.zoo)
    pca = RenderingPCA(t["train"], a.k)
    code = {s: pca.code(t[s]) for s in t}

    def reconstruct_psnr(pred, split):
        return pca.psnr(pred, t[split])

    if a.encoder == "scalegmn":
        enc = ScaleGMNEncoder(zoo.arch, EncoderConfig(d=a.d, n_layers=a.layers, latent_dim=a.latent, symmetry="sign",
                                                       dropout=0.0, input_scale=a.input_scale))
        if a.input_scale != "none":
            enc.set_input_scale(p["train"])
        norm = nn.BatchNorm1d(a.latent) if a.latent_norm == "batch" else nn.Identity()
        model = nn.Sequential(enc, norm, nn.Linear(a.latent, a.k))
        prep = lambda x: x  # noqa: E731
    else:
        mu, sd = p["train"].mean(0), p["train"].std(0).clamp_min(1e-6)
        model = nn.Sequential(nn.Linear(zoo.arch.n_params, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(),
                              nn.Linear(256, a.k))
        prep = lambda x: (x - mu) / sd  # noqa: E731
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    steps = a.epochs * math.ceil(len(p["train"]) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(a.seed)
    const = reconstruct_psnr(torch.zeros_like(code["test"]), "test")
    print(f"{a.zoo} encoder={a.encoder} k={a.k}: constant {const:.2f} dB, PCA-{a.k} ceiling "
          f"{reconstruct_psnr(code['test'], 'test'):.2f} dB", flush=True)
    t0 = time.time()
    for ep in range(a.epochs):
        model.train()
        for idx in torch.randperm(len(p["train"]), generator=g).split(64):
            loss = (model(prep(p["train"][idx])) - code["train"][idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            val = reconstruct_psnr(torch.cat([model(prep(x)) for x in p["val"].split(256)]), "val")
        print(f"epoch {ep + 1:3d}  train mse {loss.item():.3f}  val {val:6.2f} dB  {time.time() - t0:5.0f} s", flush=True)
    with torch.no_grad():
        test = reconstruct_psnr(torch.cat([model(prep(x)) for x in p["test"].split(256)]), "test")
    print(f"test {test:.2f} dB (+{test - const:.2f} over the constant image)")


if __name__ == "__main__":
    main()
