"""Symmetry actions on batches of networks (docs/design.md §3).

A group element holds, for each hidden layer l, a permutation `perm[l]` `[B, n_l]` and a
per-unit factor `scale[l]` `[B, n_l]` (±1 for sign flips, > 0 for ReLU rescaling, 1 for none).
Applying it makes new unit i of layer l out of old unit perm[l][:, i], multiplied by scale[l][:, i]:

    W_l[i]      <- q_i * W_l[perm_i]          (incoming weights; conv: the whole kernel)
    b_l[i]      <- q_i * b_l[perm_i]
    W_l+1[:, i] <- W_l+1[:, perm_i] / q_i     (outgoing weights)

Kinds are strings of letters: P (permute), D (sign flips), S (positive scaling), e.g. "PD", "PS".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .architecture import HOMOGENEOUS_ACTIVATIONS, ODD_ACTIVATIONS, Architecture
from .layout import flatten, unflatten


@dataclass
class GroupElement:
    perms: list[torch.Tensor]   # per hidden layer, [B, n_l] long
    scales: list[torch.Tensor]  # per hidden layer, [B, n_l] float

    @property
    def batch(self) -> int:
        return self.perms[0].shape[0]

    def to(self, device=None, dtype=None) -> "GroupElement":
        return GroupElement([p.to(device) for p in self.perms], [s.to(device=device, dtype=dtype) for s in self.scales])


def identity_element(arch: Architecture, batch: int, device=None, dtype=torch.float32) -> GroupElement:
    perms = [torch.arange(n, device=device).expand(batch, n).clone() for n in arch.hidden_sizes]
    scales = [torch.ones(batch, n, device=device, dtype=dtype) for n in arch.hidden_sizes]
    return GroupElement(perms, scales)


def natural_kinds(activation: str) -> str:
    """The largest symmetry group of an activation: PD for odd ones, PS for ReLU."""
    if activation in ODD_ACTIVATIONS:
        return "PD"
    if activation in HOMOGENEOUS_ACTIVATIONS:
        return "PS"
    return "P"


def random_element(arch: Architecture, batch: int, kinds: str = "P", generator: torch.Generator | None = None,
                   scale_range: tuple[float, float] = (0.25, 4.0), device=None, dtype=torch.float32) -> GroupElement:
    """A random group element per network. Scales are log-uniform in `scale_range`."""
    unknown = set(kinds) - set("PDS")
    if unknown:
        raise ValueError(f"unknown symmetry kinds {sorted(unknown)}: use P (permutation), D (sign), S (scale)")
    g = identity_element(arch, batch, dtype=dtype)
    for l, n in enumerate(arch.hidden_sizes):
        if "P" in kinds:
            g.perms[l] = torch.argsort(torch.rand(batch, n, generator=generator), dim=1)
        q = torch.ones(batch, n, dtype=torch.float64)
        if "D" in kinds:
            q = q * (torch.randint(0, 2, (batch, n), generator=generator) * 2 - 1)
        if "S" in kinds:
            lo, hi = torch.log(torch.tensor(scale_range, dtype=torch.float64))
            q = q * torch.exp(lo + (hi - lo) * torch.rand(batch, n, generator=generator, dtype=torch.float64))
        g.scales[l] = q.to(dtype)
    return g.to(device)


def _gather_units(t: torch.Tensor, perm: torch.Tensor, dim: int) -> torch.Tensor:
    """Reorder `t` `[B, ...]` along `dim` by a per-network permutation `[B, n]`."""
    shape = [1] * t.dim()
    shape[0], shape[dim] = perm.shape
    idx = perm.view(shape).expand(*t.shape[:dim], perm.shape[1], *t.shape[dim + 1:])
    return torch.gather(t, dim, idx)


def _unit_shape(t: torch.Tensor, dim: int) -> list[int]:
    shape = [1] * t.dim()
    shape[0], shape[dim] = t.shape[0], t.shape[dim]
    return shape


def apply_element(arch: Architecture, params: torch.Tensor, g: GroupElement) -> torch.Tensor:
    """Transform a batch `[B, P]` by `g`; returns a new `[B, P]` tensor computing the same functions."""
    layers = [(w.clone(), b.clone()) for w, b in unflatten(arch, params)]
    for l in range(len(arch.hidden_sizes)):
        perm, q = g.perms[l].to(params.device), g.scales[l].to(params.device, params.dtype)
        w, b = layers[l]
        w = _gather_units(w, perm, 1) * q.view(_unit_shape(w, 1))
        b = _gather_units(b, perm, 1) * q
        w_next, b_next = layers[l + 1]
        w_next = _gather_units(w_next, perm, 2) / q.view(_unit_shape(w_next, 2))
        layers[l], layers[l + 1] = (w, b), (w_next, b_next)
    return flatten(layers)


def compose(first: GroupElement, then: GroupElement) -> GroupElement:
    """The element equal to applying `first`, then `then`."""
    perms, scales = [], []
    for p1, q1, p2, q2 in zip(first.perms, first.scales, then.perms, then.scales):
        perms.append(torch.gather(p1, 1, p2))
        scales.append(torch.gather(q1, 1, p2) * q2)
    return GroupElement(perms, scales)


def invert(g: GroupElement) -> GroupElement:
    perms, scales = [], []
    for p, q in zip(g.perms, g.scales):
        inv = torch.argsort(p, dim=1)
        perms.append(inv)
        scales.append(1.0 / torch.gather(q, 1, inv))
    return GroupElement(perms, scales)


def random_transform(arch: Architecture, params: torch.Tensor, kinds: str, generator=None, **kw) -> torch.Tensor:
    """Convenience: apply a fresh random element of the given kinds to every network in the batch."""
    g = random_element(arch, params.shape[0], kinds, generator, device=params.device, dtype=params.dtype, **kw)
    return apply_element(arch, params, g)
