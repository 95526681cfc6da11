"""Ordinary `nn.Module` versions of the zoo networks, one network at a time.

They are the reference the batched functional forward is checked against, and what users get
when they want a zoo network as a regular PyTorch model.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .architecture import Architecture
from .functional import _tf_pad
from .layout import unflatten
from .registry import activation


class TFSamePad(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x):
        return _tf_pad(x, self.kernel, self.stride)


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(-2, -1))


class Offset(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x + self.value


def _act(name: str, w0: float) -> nn.Module:
    return activation(name).module(w0)


def build_module(arch: Architecture, flat: torch.Tensor | None = None, activation: str | None = None) -> nn.Sequential:
    """An `nn.Sequential` for one network, loaded from a flat vector `[P]` when given."""
    act = activation or arch.activation
    mods: list[nn.Module] = []
    for i, l in enumerate(arch.layers):
        if l.layer_type == "conv":
            if l.padding == "same":
                mods.append(TFSamePad(l.kernel, l.stride))
            mods.append(nn.Conv2d(l.n_in, l.n_out, l.kernel, stride=l.stride))
        else:
            if i > 0 and arch.layers[i - 1].layer_type == "conv":
                mods.append(GlobalAvgPool())
            mods.append(nn.Linear(l.n_in, l.n_out))
        if i < arch.n_layers - 1:
            mods.append(_act(act, arch.w0))
    if arch.output_offset:
        mods.append(Offset(arch.output_offset))
    net = nn.Sequential(*mods)
    if flat is not None:
        net = net.to(flat.dtype)
        weights = [m for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
        with torch.no_grad():
            for m, (w, b) in zip(weights, unflatten(arch, flat.detach())):
                m.weight.copy_(w)
                m.bias.copy_(b)
    return net
