"""Network families: what kind of function a zoo's networks compute, one object per kind (docs/design.md §2).

    fam = network_family(arch)      # or network_family("siren"); "inr", the configs' former name, means SIREN
    out = fam.forward(arch, params, inputs, activation)  # renderings [B, N, d_out] | logits [B, N, C]
    fam.function(out)               # what two networks are compared on: the rendering | class probabilities
    fam.function_distance(out, target)  # [B]: MSE to a rendering | cross-entropy to probabilities
    fam.metric                      # one network's quality: "psnr" | "accuracy"
    fam.classifies                  # inputs are task images and outputs class logits (else a coordinate grid
                                    # in, a rendering out)

`Architecture.family` (stored in every zoo manifest) and `dataset.family` (configs) name one of these.
What needs task images, targets or evaluators (higher layers: tasks/, merge/) asks the object which
kind it is, rather than comparing names. Adding a kind of network is one subclass and one row.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .functional import cnn_forward, siren_render


@dataclass(frozen=True)
class NetworkFamily:
    name: str                 # Architecture.family, dataset.family
    title: str                # for messages: "SIREN", "CNN"
    metric: str               # one network's quality: "psnr" | "accuracy"
    classifies: bool          # task images in, class logits out (else coordinates in, a rendering out)
    compared_on: str          # what `function_distance` measures, for messages
    former_names: tuple[str, ...] = ()  # what saved configs and checkpoints called it

    def forward(self, arch, params: torch.Tensor, inputs: torch.Tensor, activation=None) -> torch.Tensor:
        raise NotImplementedError

    def function(self, outputs: torch.Tensor) -> torch.Tensor:
        """The outputs as the function networks are compared (and merged) on."""
        raise NotImplementedError

    def function_distance(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per network `[B]`: how far `outputs` (of `forward`) are from a `target` function (of `function`)."""
        raise NotImplementedError


class SirenFamily(NetworkFamily):
    def forward(self, arch, params, inputs, activation=None):
        return siren_render(arch, params, inputs)

    def function(self, outputs):
        return outputs

    def function_distance(self, outputs, target):
        return (outputs - target).pow(2).mean(dim=(1, 2))


class CNNFamily(NetworkFamily):
    def forward(self, arch, params, inputs, activation=None):
        return cnn_forward(arch, params, inputs, activation)

    def function(self, outputs):
        return outputs.softmax(-1)

    def function_distance(self, outputs, target):
        return -(target * F.log_softmax(outputs, dim=-1)).sum(-1).mean(-1)


SIREN = SirenFamily("siren", "SIREN", "psnr", False, "MSE to the parents' mean rendering", former_names=("inr",))
CNN = CNNFamily("cnn", "CNN", "accuracy", True, "cross-entropy to the parents' mean prediction")
FAMILIES: dict[str, NetworkFamily] = {f.name: f for f in (SIREN, CNN)}
FORMER_NAMES: dict[str, str] = {old: f.name for f in FAMILIES.values() for old in f.former_names}


def network_family(of) -> NetworkFamily:
    """The family of an `Architecture`, or of a family name (a former one included)."""
    name = getattr(of, "family", of)
    name = FORMER_NAMES.get(name, name)
    if name not in FAMILIES:
        raise ValueError(f"unknown network family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def current_family_name(name):
    """A family name as saved configs and checkpoints may write it ("inr"), in today's words ("siren");
    anything else unchanged (the schema reports it)."""
    return FORMER_NAMES.get(name, name) if isinstance(name, str) else name
