"""Does canonicalising by weight matching make an independent-init zoo readable? Align every network to
one reference network of the train split (`wm-signed`, the SIREN's sign symmetry), then fit the same
small MLP as `encoder_image_regression.py --encoder mlp` on the aligned weights to regress the
rendering's top-K principal components; report test PSNR of mean + code · basis.

    python -m experiments.decoder_or_encoder.aligned_regression zoo/mnist5k-inr [--k 32] [--epochs 30] [--reference medoid|0]

Aligning to a fixed reference is itself permutation/sign invariant (up to ties), so this is an invariant
encoder — canonicalisation + MLP — the baseline a graph metanetwork has to beat.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
from experiments.rendering_pca import RenderingPCA, load_renderings

from gmnae.merge.matching import align


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("zoo")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--reference", type=int, default=0, help="index of the train network all are aligned to")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    zoo, p, t = load_renderings(a.zoo)
    t0 = time.time()
    ref = p["train"][a.reference]
    q = {s: align(zoo.arch, ref.expand_as(p[s]).contiguous(), p[s], method="wm-signed") for s in p}
    print(f"aligned {sum(len(x) for x in q.values())} networks in {time.time() - t0:.0f} s", flush=True)
    pca = RenderingPCA(t["train"], a.k)
    code = {s: pca.code(t[s]) for s in t}

    def reconstruct_psnr(pred, split):
        return pca.psnr(pred, t[split])

    for name, w in (("raw", p), ("aligned", q)):
        mu, sd = w["train"].mean(0), w["train"].std(0).clamp_min(1e-6)
        x = {s: (w[s] - mu) / sd for s in w}
        model = nn.Sequential(nn.Linear(zoo.arch.n_params, 256), nn.SiLU(), nn.Dropout(0.2), nn.Linear(256, 256),
                              nn.SiLU(), nn.Dropout(0.2), nn.Linear(256, a.k))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
        g = torch.Generator().manual_seed(a.seed)
        best = -1.0
        for ep in range(a.epochs):
            model.train()
            for idx in torch.randperm(len(x["train"]), generator=g).split(64):
                loss = (model(x["train"][idx]) - code["train"][idx]).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val = reconstruct_psnr(model(x["val"]), "val")
                if val > best:
                    best, test = val, reconstruct_psnr(model(x["test"]), "test")
        print(f"{name:<8} MLP → PCA-{a.k}: best val {best:.2f} dB, test at that epoch {test:.2f} dB "
              f"(constant {reconstruct_psnr(torch.zeros_like(code['test']), 'test'):.2f})", flush=True)


if __name__ == "__main__":
    main()
