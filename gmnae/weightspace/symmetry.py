"""Symmetry actions on batches of networks (docs/design.md §3).

A group element holds, for each unit group k of the architecture's permutation spec (one per hidden
layer in a feed-forward chain), a permutation `perm[k]` `[B, n_k]` and a per-unit factor `scale[k]`
`[B, n_k]` (±1 for sign flips, > 0 for positive rescaling, 1 for none). Applying it makes new unit i
out of old unit perm[k][:, i], multiplied by scale[k][:, i]:

    W_l[i]      <- q_i * W_l[perm_i]          (incoming weights; conv: the whole kernel)
    b_l[i]      <- q_i * b_l[perm_i]
    W_l+1[:, i] <- W_l+1[:, perm_i] / q_i     (outgoing weights)

on every tensor axis the spec lists for the group (`weightspace.permutation_spec`). This is the one
implementation of the action: weight matching, the pair sets and the tests all call `apply_element`.
Which factors are symmetries depends on the activation (`weightspace.registry`).

Kinds are strings of letters: P (permute), D (sign flips), S (positive scaling), e.g. "PD", "PS".
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .permutation_spec import permutation_spec
from .registry import activation as _activation


@dataclass
class GroupElement:
    perms: list[torch.Tensor]   # per hidden layer, [B, n_l] long
    scales: list[torch.Tensor]  # per hidden layer, [B, n_l] float

    @property
    def batch(self) -> int:
        return self.perms[0].shape[0]

    def to(self, device=None, dtype=None) -> "GroupElement":
        return GroupElement([p.to(device) for p in self.perms], [s.to(device=device, dtype=dtype) for s in self.scales])


def identity_element(arch, batch: int, device=None, dtype=torch.float32) -> GroupElement:
    """`arch`: an Architecture or a PermutationSpec (so are all `arch` arguments here)."""
    sizes = permutation_spec(arch).sizes
    perms = [torch.arange(n, device=device).expand(batch, n).clone() for n in sizes]
    scales = [torch.ones(batch, n, device=device, dtype=dtype) for n in sizes]
    return GroupElement(perms, scales)


def natural_symmetries(activation: str) -> str:
    """The largest symmetry group of an activation (registry): PD for odd ones, PS for homogeneous ones."""
    return _activation(activation).symmetries


def random_element(arch, batch: int, symmetries: str = "P", generator: torch.Generator | None = None,
                   scale_range: tuple[float, float] = (0.25, 4.0), device=None, dtype=torch.float32) -> GroupElement:
    """A random group element per network, drawn from `symmetries`: letters P (permutation), D (sign), S (scale).
    Scales are log-uniform in `scale_range`."""
    unknown = set(symmetries) - set("PDS")
    if unknown:
        raise ValueError(f"unknown symmetries {sorted(unknown)}: use P (permutation), D (sign), S (scale)")
    g = identity_element(arch, batch, dtype=dtype)
    for l, n in enumerate(permutation_spec(arch).sizes):
        if "P" in symmetries:
            g.perms[l] = torch.argsort(torch.rand(batch, n, generator=generator), dim=1)
        q = torch.ones(batch, n, dtype=torch.float64)
        if "D" in symmetries:
            q = q * (torch.randint(0, 2, (batch, n), generator=generator) * 2 - 1)
        if "S" in symmetries:
            lo, hi = torch.log(torch.tensor(scale_range, dtype=torch.float64))
            q = q * torch.exp(lo + (hi - lo) * torch.rand(batch, n, generator=generator, dtype=torch.float64))
        g.scales[l] = q.to(dtype)
    return g.to(device)


def _is_one(q: torch.Tensor) -> bool:
    return bool((q == 1).all())


def _is_identity(perm: torch.Tensor) -> bool:
    return bool((perm == torch.arange(perm.shape[1], device=perm.device)).all())


def _gather_axis(t: torch.Tensor, perm: torch.Tensor, dim: int) -> torch.Tensor:
    """Reorder `t` `[n, ...]` along `dim` by a per-network permutation `[n, d]`, as one row gather."""
    n, d = perm.shape
    moved = t if dim == 1 else t.movedim(dim, 1).contiguous()
    flat = (torch.arange(n, device=t.device).unsqueeze(1) * d + perm).reshape(-1)
    out = moved.reshape(n * d, -1).index_select(0, flat).view_as(moved)
    return out if dim == 1 else out.movedim(1, dim)


def _factor_view(q: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * t.dim()
    shape[0], shape[dim] = q.shape
    return q.view(shape)


def apply_element(arch, params: torch.Tensor, g: GroupElement, out: torch.Tensor | None = None) -> torch.Tensor:
    """Transform a batch `[B, P]` by `g`; returns a new `[B, P]` tensor computing the same functions
    (written into `out`, `[B, P]` with contiguous rows, when given).

    Every tensor is gathered along each axis a unit group acts on (row gathers, `index_select`) and
    multiplied (incoming) or divided (outgoing) by the factors; identity permutations and unit factors
    are skipped. When every factor is ±1 and no tensor has more than 2 axes (dense layers), each
    entry of the result is one entry of `params` times ±1, so the same result, bitwise, comes from one
    gather by a flat index: 2-3x faster, weight matching's final move (on conv kernels the index
    costs more than the row gathers).
    """
    spec = permutation_spec(arch)
    if all(len(shape) <= 2 for shape in spec.shapes) and all(bool((q.abs() == 1).all()) for q in g.scales):
        return _apply_by_flat_gather(spec, params, g, out)
    moved = _apply_by_axes(spec, params, g)
    return moved if out is None else out.copy_(moved)


def _apply_by_axes(spec, params: torch.Tensor, g: GroupElement) -> torch.Tensor:
    out = []
    for t, x in enumerate(spec.unflatten(params)):
        for axis, k, incoming in spec.tensor_axes(t):
            p, q = g.perms[k].to(params.device), g.scales[k].to(params.device, params.dtype)
            if not _is_identity(p):
                x = _gather_axis(x, p, axis + 1)
            if not _is_one(q):
                x = x * _factor_view(q, x, axis + 1) if incoming else x / _factor_view(q, x, axis + 1)
        out.append(x.reshape(params.shape[0], -1))
    return torch.cat(out, dim=1)


def _apply_by_flat_gather(spec, params: torch.Tensor, g: GroupElement, out: torch.Tensor | None) -> torch.Tensor:
    """`_apply_by_axes` for factors of ±1: one gather by a flat index `[n, P]` built from the permutations,
    times the product of the ±1 factors on each entry (x * q incoming and x / q outgoing agree for q = ±1)."""
    n, dev = params.shape[0], params.device
    perms = [p.to(dev) for p in g.perms]
    signs = None if all(_is_one(q) for q in g.scales) else [q.to(dev, params.dtype) for q in g.scales]
    index = torch.empty(n, params.shape[1], dtype=torch.long, device=dev)
    factor = torch.empty_like(params) if signs is not None else None
    for t, ((start, end), shape) in enumerate(zip(spec.offsets(), spec.shapes)):
        axes = {axis: k for axis, k, _ in spec.tensor_axes(t)}
        idx = torch.full([1] * (len(shape) + 1), start, dtype=torch.long, device=dev)
        fac = None
        stride = 1
        for axis in reversed(range(len(shape))):
            view = [1] * (len(shape) + 1)
            view[axis + 1] = shape[axis]
            if axis in axes:
                view[0] = n
                idx = idx + perms[axes[axis]].view(view) * stride
                if signs is not None:
                    q = signs[axes[axis]].view(view)
                    fac = q if fac is None else fac * q
            else:
                idx = idx + torch.arange(shape[axis], device=dev).view(view) * stride
            stride *= shape[axis]
        index[:, start:end].view(n, *shape).copy_(idx.expand(n, *shape))
        if signs is not None:
            dst = factor[:, start:end].view(n, *shape)
            dst.fill_(1.0) if fac is None else dst.copy_(fac.expand(n, *shape))
    moved = torch.gather(params, 1, index, out=out)
    if signs is None:
        return moved
    return moved.mul_(factor) if out is not None else moved * factor


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


def random_transform(arch, params: torch.Tensor, symmetries: str, generator=None, **kw) -> torch.Tensor:
    """Convenience: apply a fresh random element of `symmetries` (e.g. "PD") to every network in the batch."""
    g = random_element(arch, params.shape[0], symmetries, generator, device=params.device, dtype=params.dtype, **kw)
    return apply_element(arch, params, g)
