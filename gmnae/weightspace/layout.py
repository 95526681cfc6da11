"""Flat parameter vectors <-> per-layer tensors (docs/design.md §2, "Flat layout").

A batch of B networks is a `[B, P]` tensor. `unflatten` returns views into it (no copies), so
writing into a layer's weight writes into the flat batch.
"""
from __future__ import annotations

import torch

from .architecture import Architecture


def layer_offsets(arch: Architecture) -> list[tuple[int, int, int]]:
    """(weight_start, bias_start, end) of each layer in the flat vector."""
    out, pos = [], 0
    for l in arch.layers:
        w, b = pos, pos + l.weight_numel
        pos = b + l.n_out
        out.append((w, b, pos))
    return out


def param_slices(arch: Architecture) -> list[slice]:
    """The flat-vector slice of every tensor: weight 0, bias 0, weight 1, ..."""
    out = []
    for w, b, e in layer_offsets(arch):
        out += [slice(w, b), slice(b, e)]
    return out


def unflatten(arch: Architecture, flat: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`[..., P]` -> [(weight `[..., *weight_shape]`, bias `[..., n_out]`)] per layer, as views."""
    if flat.shape[-1] != arch.n_params:
        raise ValueError(f"parameter vector has {flat.shape[-1]} entries but {arch.describe()} needs {arch.n_params}")
    lead = flat.shape[:-1]
    out = []
    for l, (w, b, e) in zip(arch.layers, layer_offsets(arch)):
        out.append((flat[..., w:b].view(*lead, *l.weight_shape), flat[..., b:e]))
    return out


def flatten(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Inverse of `unflatten`: per-layer (weight, bias) with a shared leading batch shape -> `[..., P]`."""
    parts = []
    for w, b in layers:
        lead = b.shape[:-1]
        parts += [w.reshape(*lead, -1), b]
    return torch.cat(parts, dim=-1)


def state_dict_from_flat(arch: Architecture, flat: torch.Tensor, keys: list[str] | None = None) -> dict:
    """One network's flat vector -> an ordered state dict (`layers.{i}.weight/bias`, or the given keys)."""
    tensors = [t for wb in unflatten(arch, flat) for t in wb]
    keys = keys or [k for k, _ in arch.param_shapes]
    return {k: t.detach().clone() for k, t in zip(keys, tensors)}


def flat_from_state_dict(arch: Architecture, state: dict) -> torch.Tensor:
    """A state dict whose tensors come in flat-layout order (any key names) -> flat vector `[P]`."""
    tensors = [v for v in state.values() if torch.is_tensor(v) and v.dtype.is_floating_point]
    shapes = [s for _, s in arch.param_shapes]
    got = [tuple(t.shape) for t in tensors]
    if got != [tuple(s) for s in shapes]:
        raise ValueError(f"state dict shapes {got} do not match {arch.describe()} (expects {shapes})")
    return torch.cat([t.reshape(-1).float() for t in tensors])
