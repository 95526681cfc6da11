"""What an autoencoder's latent must carry: test PSNR ceilings on an INR zoo, from renderings alone.

    python -m experiments.ae_ceilings.ceilings zoo/mnist5k-inr

Each row is the PSNR (against each test network's own rendering) of the best reconstruction from a
latent that knows only: nothing (the train split's mean rendering), the class (class-mean image,
with the true label or with a classifier of a given accuracy), or the top-k principal components
of the rendering (an oracle linear latent fitted on the train split).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from gmnae.tasks.grid import coordinate_grid, psnr
from gmnae.weightspace import siren_render
from gmnae.zoo import Zoo


def main(zoo_dir: str) -> None:
    torch.set_num_threads(1)
    zoo, coords = Zoo(zoo_dir), coordinate_grid(28)
    render, label = {}, {}
    for split in ("train", "test"):
        with torch.no_grad():
            render[split] = siren_render(zoo.arch, torch.from_numpy(zoo.read_params(split)), coords).squeeze(-1)
        label[split] = torch.from_numpy(np.asarray(zoo.read_meta(split)["label"])).long()
    test = render["test"]

    def row(name: str, rec: torch.Tensor) -> None:
        print(f"{name:<55} {float(psnr((test - rec).pow(2).mean(1)).mean()):6.2f} dB")

    mean = render["train"].mean(0)
    row("constant (train mean rendering)", mean)
    class_mean = torch.stack([render["train"][label["train"] == k].mean(0) for k in range(10)])
    row("class-mean image, true label", class_mean[label["test"]])
    g = torch.Generator().manual_seed(0)
    for acc in (0.4, 0.9):  # a wrong label is a uniformly random class
        lab = label["test"].clone()
        wrong = torch.rand(len(lab), generator=g) > acc
        lab[wrong] = torch.randint(10, (int(wrong.sum()),), generator=g)
        row(f"class-mean image, classifier accuracy {acc}", class_mean[lab])
    _, s, v = torch.linalg.svd(render["train"] - mean, full_matrices=False)
    explained = (s**2).cumsum(0) / (s**2).sum()
    for k in (8, 16, 32, 64, 128):
        if k > len(s):  # a small zoo has fewer components
            break
        basis = v[:k]
        row(f"top-{k} principal components ({explained[k - 1]:.2f} of train variance)",
            mean + (test - mean) @ basis.T @ basis)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
