"""Decoders: latent -> a full flat parameter vector of the zoo's architecture."""
from __future__ import annotations

import torch
import torch.nn as nn


class MLPDecoder(nn.Module):
    """The published decoder: latent -> hidden[0] -> hidden[1] -> ... -> P, SiLU between layers.

    With `hidden = (2d, 4d)` this is Boufalis et al.'s `d -> 2d -> 4d -> P`.

    `standardize=True` (the config default, `model.decoder.standardize`; the class default False is
    the published raw output) emits `mean + std * net(z)` with the zoo's per-parameter mean
    and std (buffers, saved in checkpoints): every output starts in the range the zoo's weights
    live in. A SIREN with w0 = 30 turns weights a few times too large into noise, which makes the
    published raw output slow to train. Only the decoder's output is scaled; the encoder still sees
    raw weights, so its invariances are untouched.
    """

    def __init__(self, latent_dim: int, n_params: int, hidden=(256, 512), standardize: bool = False):
        super().__init__()
        dims = [latent_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(dims[-1], n_params))
        self.net = nn.Sequential(*layers)
        self.standardize = standardize
        self.register_buffer("out_mean", torch.zeros(n_params))
        self.register_buffer("out_std", torch.ones(n_params))

    def set_output_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.out_mean.copy_(mean)
        self.out_std.copy_(std.clamp_min(1e-6))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.net(z)
        return self.out_mean + self.out_std * out if self.standardize else out


DECODERS = {"mlp": MLPDecoder}


def build_decoder(decoder_type: str, latent_dim: int, n_params: int, **kw) -> nn.Module:
    if decoder_type not in DECODERS:
        raise ValueError(f"unknown decoder {decoder_type!r}; known: {', '.join(DECODERS)}")
    return DECODERS[decoder_type](latent_dim, n_params, **kw)
