"""Decoders: latent -> a full flat parameter vector of the zoo's architecture."""
from __future__ import annotations

import torch
import torch.nn as nn


class MLPDecoder(nn.Module):
    """The published decoder: latent -> hidden[0] -> hidden[1] -> ... -> P, SiLU between layers.

    With `hidden = (2d, 4d)` this is Boufalis et al.'s `d -> 2d -> 4d -> P`.
    """

    def __init__(self, latent_dim: int, n_params: int, hidden=(256, 512)):
        super().__init__()
        dims = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(dims[-1], n_params))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


DECODERS = {"mlp": MLPDecoder}


def build_decoder(kind: str, latent_dim: int, n_params: int, **kw) -> nn.Module:
    if kind not in DECODERS:
        raise ValueError(f"unknown decoder {kind!r}; known: {', '.join(DECODERS)}")
    return DECODERS[kind](latent_dim, n_params, **kw)
