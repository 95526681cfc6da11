"""How much of a SIREN zoo the phase canonicalization moves beyond the sign symmetry: the hidden biases in
units of the half-period π/w0, and the fraction of hidden units whose bias lies outside (-π/(2w0), π/(2w0)]
(the only ones `model.encoder.phase_canonical` treats differently from a sign flip, to which the ScaleGMN
encoder is invariant already).

    python -m experiments.fmnist_inr.phase zoo/fmnist-inr [--split train]
"""
from __future__ import annotations

import argparse
import math

import torch

from gmnae.weightspace import unflatten
from gmnae.zoo import Zoo


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("zoo")
    p.add_argument("--split", default="train")
    args = p.parse_args(argv)
    zoo = Zoo(args.zoo)
    params = torch.from_numpy(zoo.read_params(args.split)).double()
    half_period = math.pi / zoo.arch.w0
    print(f"{len(params)} {args.split} networks of {zoo.root}, half-period π/w0 = {half_period:.4f}\n")
    print("| hidden layer | bias min / max (half-periods) | bias std (half-periods) | units outside ±1/2 half-period |")
    print("|---|---|---|---|")
    for l, (_, b) in enumerate(unflatten(zoo.arch, params)[:-1]):
        h = b / half_period
        outside = int((h.abs() > 0.5).sum())
        print(f"| {l} | {float(h.min()):+.3f} / {float(h.max()):+.3f} | {float(h.std()):.3f} "
              f"| {outside} of {h.numel():,} ({outside / h.numel():.4%}) |")


if __name__ == "__main__":
    main()
