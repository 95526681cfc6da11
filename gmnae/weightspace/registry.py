"""The one table of what each activation means for weight space (docs/design.md §3).

Every module that needs to know something about an activation — the functional forward, the
`nn.Module` builder, which symmetry group it has, which weight-matching variant and which encoder
canonicalisation fit it, which orbit pairs test it — looks it up here; none names an activation.

    spec = activation("relu")
    spec.group            # "scale": positive rescaling of hidden units is a symmetry
    spec.symmetries       # "PS": the largest group (letters of `weightspace.symmetry`)
    spec.matching         # "wm-scale": the Git Re-Basin variant that matches over that group
    spec.encoder_symmetry # "scale": the ScaleGMN canonicalisation for these networks
    spec.orbit_symmetries # ("P", "S", "PS"): orbit pair types of the merging evaluation
    spec.code             # 1: index into ACTIVATIONS (per-network activation codes in batches)

Adding an activation is one row of `_ROWS` (append: codes are positions, and batches carry codes).
Its group must really be a symmetry: "sign" needs an odd function, f(-z) = -f(z); "scale" a
positively homogeneous one, f(a z) = a f(z) for a > 0; "none" leaves permutations only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SymmetryGroup:
    """What a per-unit factor group implies, beyond the permutations every activation has."""

    name: str              # "sign" | "scale" | "none"
    letter: str            # its symmetry letter in `weightspace.symmetry` ("D", "S", "")
    matching: str          # the weight-matching method over P x this group
    encoder_symmetry: str  # the ScaleGMN `symmetry` setting that is invariant to it


GROUPS = {
    "sign": SymmetryGroup("sign", "D", "wm-signed", "sign"),
    "scale": SymmetryGroup("scale", "S", "wm-scale", "scale"),
    "none": SymmetryGroup("none", "", "wm", "permutation"),
}


@dataclass(frozen=True)
class Activation:
    """One activation: how to compute it and its symmetry group."""

    name: str
    fn: Callable[[torch.Tensor, float], torch.Tensor]  # (z, w0) -> activation; w0 only matters for sine
    module: Callable[[float], nn.Module]                # w0 -> an nn.Module computing fn
    group_name: str                                     # key of GROUPS
    code: int = -1                                      # set from the row's position

    @property
    def group(self) -> SymmetryGroup:
        return GROUPS[self.group_name]

    @property
    def symmetries(self) -> str:
        """The largest symmetry group: "P" plus the group's letter ("PD", "PS", "P")."""
        return "P" + self.group.letter

    @property
    def orbit_symmetries(self) -> tuple[str, ...]:
        """What orbit pairs are drawn with (pair types `orbit-<these>`): the permutations, the factors alone and both ("P", "D", "PD"), or just "P"."""
        letter = self.group.letter
        return ("P", letter, "P" + letter) if letter else ("P",)

    @property
    def matching(self) -> str:
        return self.group.matching

    @property
    def encoder_symmetry(self) -> str:
        return self.group.encoder_symmetry


class Sine(nn.Module):
    def __init__(self, w0: float):
        super().__init__()
        self.w0 = w0

    def forward(self, x):
        return torch.sin(self.w0 * x)


LEAKY_SLOPE = 0.01  # PyTorch's default negative slope

_ROWS = (
    Activation("sine", lambda z, w0: torch.sin(w0 * z), Sine, "sign"),
    Activation("relu", lambda z, w0: torch.relu(z), lambda w0: nn.ReLU(), "scale"),
    Activation("tanh", lambda z, w0: torch.tanh(z), lambda w0: nn.Tanh(), "sign"),
    Activation("leaky_relu", lambda z, w0: F.leaky_relu(z, LEAKY_SLOPE),
               lambda w0: nn.LeakyReLU(LEAKY_SLOPE), "scale"),
)

REGISTRY: dict[str, Activation] = {
    a.name: Activation(a.name, a.fn, a.module, a.group_name, code) for code, a in enumerate(_ROWS)}
ACTIVATIONS: tuple[str, ...] = tuple(REGISTRY)  # code -> name
MIXED = "mixed"  # an architecture whose networks differ in activation (each network's travels with it)


def activation(name: str) -> Activation:
    """The registry row of `name`; ValueError naming the known ones otherwise."""
    if name not in REGISTRY:
        hint = "; a mixed zoo needs each network's activation" if name == MIXED else ""
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}{hint}")
    return REGISTRY[name]


def by_code(code: int) -> Activation:
    return REGISTRY[ACTIVATIONS[code]]


def activations_with(group: str) -> tuple[str, ...]:
    """Names of the activations whose symmetry group is `group` ("sign", "scale", "none")."""
    return tuple(a.name for a in REGISTRY.values() if a.group_name == group)


def code_of(name: str) -> int:
    return activation(name).code


def codes_of(names) -> torch.Tensor:
    """Per-network names -> codes `[B]` (long)."""
    return torch.tensor([code_of(a) for a in names], dtype=torch.long)


def group_masks(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-network codes `[B]` -> (has sign symmetry, has scale symmetry), bool `[B]` each."""
    sign = torch.tensor([a.group_name == "sign" for a in REGISTRY.values()], device=codes.device)
    scale = torch.tensor([a.group_name == "scale" for a in REGISTRY.values()], device=codes.device)
    return sign[codes], scale[codes]


def encoder_symmetry(activation_name: str) -> str:
    """The ScaleGMN `symmetry` for `symmetry="auto"`: the activation's group, "hetero" for mixed zoos."""
    return "hetero" if activation_name == MIXED else activation(activation_name).encoder_symmetry
