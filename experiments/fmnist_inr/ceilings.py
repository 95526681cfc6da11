"""Val PSNR ceilings of an INR autoencoder on a large zoo, against each val network's own rendering
(what `val/psnr` of a run measures): the best constant image, the class-mean image (true label), and the
top-k principal components of the renderings (an oracle linear latent fitted on the train split).

    python -m experiments.fmnist_inr.ceilings zoo/fmnist-inr [--k 8 16 32 64]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from gmnae.tasks.grid import coordinate_grid, psnr
from gmnae.weightspace import siren_render
from gmnae.zoo import Zoo


def renderings(zoo: Zoo, split: str, chunk: int = 2048) -> torch.Tensor:
    """`[n, 784]` renderings, `chunk` networks at a time (all 55,000 at once would need ~5 GB per layer)."""
    params, coords = torch.from_numpy(zoo.read_params(split)), coordinate_grid(28)
    with torch.no_grad():
        return torch.cat([siren_render(zoo.arch, params[i:i + chunk], coords).squeeze(-1)
                          for i in range(0, len(params), chunk)])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("zoo")
    p.add_argument("--k", type=int, nargs="+", default=[8, 16, 32, 64])
    args = p.parse_args(argv)
    zoo = Zoo(args.zoo)
    train, val = renderings(zoo, "train"), renderings(zoo, "val")
    labels = {s: torch.from_numpy(np.asarray(zoo.read_meta(s)["label"])).long() for s in ("train", "val")}

    def row(name: str, rec: torch.Tensor) -> None:
        print(f"| {name} | {float(psnr((val - rec).pow(2).mean(1)).mean()):.2f} |")

    print("| reconstruction from | val PSNR (dB) |\n|---|---|")
    mean = train.mean(0)
    row("nothing: the train mean rendering (best constant image)", mean)
    class_mean = torch.stack([train[labels["train"] == k].mean(0) for k in range(10)])
    row("the class: class-mean image (true label)", class_mean[labels["val"]])
    _, _, v = torch.linalg.svd(train - mean, full_matrices=False)
    for k in args.k:
        basis = v[:k]
        row(f"top-{k} principal components (oracle linear code)", mean + ((val - mean) @ basis.T) @ basis)


if __name__ == "__main__":
    main()
