"""Function probes: an invariant encoder branch that reads what a network *computes*.

    probe = FunctionProbe(arch, latent_dim=64, points=64)      # SIRENs: an 8 x 8 coordinate grid
    probe = FunctionProbe(arch, latent_dim=64, points=32)      # CNNs: 32 probe images, then
    probe.set_inputs(images[:32])                               #   filled from the task (checkpointed)
    z = probe(params, activation)                              # [B, latent_dim]

Every symmetry the ScaleGMN encoder respects (hidden-neuron permutations, sign flips, positive
scaling) leaves the network's function unchanged, so the network's outputs on fixed inputs are
exactly invariant as well -- no constraint on this branch is needed. The autoencoder adds the
branch's embedding to the ScaleGMN latent (`model.probe.points`, off in the published configs).

Why it exists: on the built-in digits-inr zoo the ScaleGMN latent alone does not get past the
input-blind baselines within a CPU budget (its SIRENs are short fits from independent random
initialisations, so the image is a small perturbation of random weights), while a coarse probe of
the function gives the decoder an informative latent from the first epoch. The ScaleGMN branch
stays in the model; `model.probe.points=0` switches the probe off (the published model).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gmnae.weightspace import Architecture
from gmnae.weightspace.family import network_family


class FunctionProbe(nn.Module):
    def __init__(self, arch: Architecture, latent_dim: int, points: int, hidden: int = 128):
        super().__init__()
        self.arch, self.family = arch, network_family(arch)
        if not self.family.classifies:
            side = math.isqrt(points)
            if side * side != points or arch.layers[0].n_in != 2:
                raise ValueError(f"SIREN probes are a square 2-D grid: points={points} is not a square "
                                 f"(or the INR is not 2-D)")
            from gmnae.tasks.grid import coordinate_grid

            self.register_buffer("inputs", coordinate_grid(side) * (1 - 1 / side))  # cell centres in [-1, 1]^2
        else:
            h, w = arch.image_size
            # set_inputs (a fresh run) or the checkpoint fills these
            self.register_buffer("inputs", torch.zeros(points, arch.layers[0].n_in, h, w))
        n_out = points * arch.layers[-1].n_out
        self.net = nn.Sequential(nn.Linear(n_out, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                                 nn.Linear(hidden, latent_dim))

    def set_inputs(self, images: torch.Tensor) -> None:
        """CNN probes: the probe images (a fixed set of task images); saved with the checkpoint."""
        if images.shape != self.inputs.shape:
            raise ValueError(f"probe images {tuple(images.shape)} != {tuple(self.inputs.shape)}")
        self.inputs.copy_(images)

    def outputs(self, params: torch.Tensor, activation=None) -> torch.Tensor:
        """The networks' outputs on the probe inputs, `[B, points * n_out]`."""
        out = self.family.forward(self.arch, params, self.inputs, activation)
        if self.family.classifies:
            # log-probabilities: as invariant as the logits, without their arbitrary offset; clamped so a
            # very confident network does not dominate the embedding
            out = F.log_softmax(out, -1).clamp_min(-20.0)
        return out.flatten(1)

    def forward(self, params: torch.Tensor, activation=None) -> torch.Tensor:
        return self.net(self.outputs(params, activation))
