"""Is the decoder or the encoder the autoencoder's bottleneck? Train the autoencoder's own decoder from
latents of known quality and report test PSNR.

    python -m experiments.decoder_or_encoder.decoder_ceiling zoo/mnist5k-inr [--epochs 60] [--source pca32,pca64,weights-mlp] [--seed 0]

Sources (each row trains a fresh `MLPDecoder`, the autoencoder's decoder, with the same render-MSE loss):
  pcaK         the rendering's top-K principal components (an oracle latent fitted on the train split)
  weights-mlp  an MLP on the raw standardised weights (a weight reader with no symmetry at all)
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn as nn
from experiments.rendering_pca import RenderingPCA, load_renderings

from gmnae.nn.decoder import MLPDecoder
from gmnae.tasks.grid import coordinate_grid, psnr
from gmnae.weightspace import siren_render


def render(arch, params, coords):
    return siren_render(arch, params, coords).squeeze(-1)


def fit(arch, coords, z_train, t_train, z_test, t_test, stats, latent, hidden, epochs, lr, encoder=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dec = MLPDecoder(latent, arch.n_params, hidden=hidden, standardize=True)
    dec.set_output_statistics(*stats)
    head = encoder if encoder is not None else nn.Linear(z_train.shape[1], latent)
    params = list(dec.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    steps = epochs * math.ceil(len(t_train) / 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    for _ in range(epochs):
        for idx in torch.randperm(len(t_train), generator=g).split(64):
            out = render(arch, dec(head(z_train[idx])), coords)
            loss = (out - t_train[idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        train_psnr = float(psnr((render(arch, dec(head(z_train)), coords) - t_train).pow(2).mean(1)).mean())
    with torch.no_grad():
        test_psnr = float(psnr((render(arch, dec(head(z_test)), coords) - t_test).pow(2).mean(1)).mean())
    return train_psnr, test_psnr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--source", default="pca32,weights-mlp")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--hidden", default="128,256")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    zoo, p, t = load_renderings(a.zoo, ("train", "test"))
    coords = coordinate_grid(28)
    stats = (p["train"].mean(0), p["train"].std(0).clamp_min(1e-6))
    hidden = tuple(int(h) for h in a.hidden.split(","))
    mean = t["train"].mean(0)
    const = float(psnr((t["test"] - mean).pow(2).mean(1)).mean())
    print(f"zoo {a.zoo}: train {len(t['train'])} test {len(t['test'])}; constant image {const:.2f} dB")
    for src in a.source.split(","):
        t0 = time.time()
        kw = {}
        if src.startswith("pca"):
            pca = RenderingPCA(t["train"], int(src[3:]))
            z = {sp: pca.code(t[sp]) for sp in t}
        elif src == "weights-mlp":
            z = {sp: (p[sp] - stats[0]) / stats[1] for sp in p}
            kw["encoder"] = nn.Sequential(nn.Linear(zoo.arch.n_params, 256), nn.SiLU(), nn.Linear(256, a.latent))
        else:
            raise SystemExit(f"unknown source {src!r}")
        tr, te = fit(zoo.arch, coords, z["train"], t["train"], z["test"], t["test"], stats, a.latent, hidden,
                     a.epochs, a.lr, seed=a.seed, **kw)
        print(f"{src:<12} train {tr:6.2f} dB  test {te:6.2f} dB  (+{te - const:.2f})  {time.time() - t0:6.0f} s",
              flush=True)


if __name__ == "__main__":
    main()
