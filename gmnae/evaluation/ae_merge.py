"""Merging with the trained autoencoder: decode the (weighted) mean latent of K networks.

    model = load_autoencoder("runs/NAME")                 # a run folder (its checkpoints/last.ckpt) or a .ckpt
    merged = ae_merge(model, nets, weights)               # nets [K, P] or [G, K, P] -> dec(Σ w_k enc(θ_k))
    merged = ae_endpoints_merge(model, nets, weights)     # Σ w_k dec(enc(θ_k))

The encoder is invariant to every symmetry of the networks, so the latent mean (and its decoding)
does not depend on how each input happens to be permuted, sign-flipped or rescaled: no assignment
problem. `ae-endpoints` averages the decoded networks instead, which all come out in the decoder's
one canonical parameterisation.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import GmnaeError
from ..weightspace import ACTIVATIONS
from ..merge.kway import normalise_weights


def checkpoint_path(run_or_ckpt: str) -> Path:
    """A run folder -> its checkpoints/last.ckpt; a file -> itself (one-line errors when missing)."""
    p = Path(run_or_ckpt)
    if p.is_dir():
        ckpt = p / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise GmnaeError(f"--model {p}: run folder without checkpoints/last.ckpt; pass a run folder of "
                             "gmnae train or a .ckpt file")
        return ckpt
    if not p.is_file():
        raise GmnaeError(f"--model {p}: no such run folder or checkpoint; pass runs/NAME or a .ckpt written by gmnae train")
    return p


def load_autoencoder(run_or_ckpt: str, device: str = "cpu"):
    """The WeightSpaceAutoencoder of a run folder or checkpoint, in eval mode."""
    from ..training.autoencoder import WeightSpaceAutoencoder

    ckpt = checkpoint_path(run_or_ckpt)
    try:
        model = WeightSpaceAutoencoder.load_from_checkpoint(ckpt, map_location=device)
    except Exception as e:  # a truncated or foreign file
        first = str(e).splitlines()[0] if str(e) else repr(e)
        raise GmnaeError(f"--model {ckpt}: cannot be loaded as a gmnae autoencoder checkpoint "
                         f"({type(e).__name__}: {first}); pass a checkpoint written by gmnae train") from e
    return model.eval()


def _latents(model, nets: torch.Tensor, activation: str) -> torch.Tensor:
    """enc of `[G, K, P]` -> `[G, K, d]` in the model's dtype and device."""
    G, K, P = nets.shape
    dtype = next(model.parameters()).dtype
    flat = nets.reshape(G * K, P).to(model.device, dtype)
    codes = torch.full((G * K,), ACTIVATIONS.index(activation), device=model.device)
    return model.encode(flat, codes).view(G, K, -1)


def _batched(nets: torch.Tensor) -> tuple[torch.Tensor, bool]:
    return (nets.unsqueeze(0), True) if nets.dim() == 2 else (nets, False)


@torch.no_grad()
def ae_merge(model, nets: torch.Tensor, weights=None, activation: str | None = None) -> torch.Tensor:
    """dec(Σ_k w_k enc(nets[..., k, :])): `[K, P]` -> `[P]`, `[G, K, P]` -> `[G, P]` (equal weights by default)."""
    x, single = _batched(nets)
    act = activation or model.arch.activation
    z = _latents(model, x, act)
    w = normalise_weights(weights, x.shape[1], z.dtype).to(z.device)
    out = model.decode((z * w.view(1, -1, 1)).sum(1)).to(nets.dtype)
    return out[0] if single else out


@torch.no_grad()
def ae_endpoints_merge(model, nets: torch.Tensor, weights=None, activation: str | None = None) -> torch.Tensor:
    """Σ_k w_k dec(enc(nets[..., k, :])): the weighted mean of the decoded networks."""
    x, single = _batched(nets)
    act = activation or model.arch.activation
    z = _latents(model, x, act)
    G, K, d = z.shape
    decoded = model.decode(z.reshape(G * K, d)).view(G, K, -1)
    w = normalise_weights(weights, K, decoded.dtype).to(decoded.device)
    out = (decoded * w.view(1, -1, 1)).sum(1).to(nets.dtype)
    return out[0] if single else out
