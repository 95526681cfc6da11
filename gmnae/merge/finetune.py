"""A short functional fine-tune of merged (or decoded) networks towards their parents' function.

    merged = finetune_to_parents(arch, merged, parents, weights, inputs, steps=25)

A merge lands near a good network but not on it: the autoencoder's decoder returns a
reconstruction, weight matching's midpoint sits on the barrier. A few Adam steps on the parents'
*function* (not their weights) close most of that gap. The target of a merge of K parents with
weights `w` is the weighted mean of their outputs on `inputs`: for SIRENs, the renderings on the
coordinate grid (MSE); for CNNs, the class probabilities on task images (cross-entropy against
the mean probabilities, i.e. distillation at T = 1). The same step applies to every merge method,
so comparisons stay fair; results report the merged network before and after it.
"""
from __future__ import annotations

import torch

from ..weightspace import Architecture
from ..weightspace.family import network_family
from ..weightspace.functional import forward


def function_inputs(arch: Architecture, task: dict | None, data_root: str | None = None,
                    n_images: int = 1024, train_images: torch.Tensor | None = None) -> torch.Tensor:
    """What the fine-tune compares functions on: the coordinate grid at the task's resolution (SIRENs), or the
    first `n_images` train images of the task (CNNs: the held-out test images stay for scoring);
    `train_images`: the task's train images when the caller has them loaded already."""
    if not network_family(arch).classifies:
        from ..tasks.grid import coordinate_grid

        return coordinate_grid(int((task or {}).get("resolution", 28)))
    if train_images is None:
        from ..tasks.classification import task_images

        train_images = task_images(task, "train", data_root)[0]
    return train_images[:n_images]


def parents_target(arch: Architecture, parents: torch.Tensor, weights: torch.Tensor, inputs: torch.Tensor,
                   activation=None) -> torch.Tensor:
    """The merge's target function on `inputs`: parents `[B, K, P]`, weights `[B, K]` (rows sum to 1).

    SIRENs: weighted mean rendering `[B, N, d_out]`; CNNs: weighted mean class probabilities `[B, N, C]`.
    """
    B, K, P = parents.shape
    act = activation
    if activation is not None and not isinstance(activation, str):
        act = activation.repeat_interleave(K)  # per-network codes [B] -> one per parent
    with torch.no_grad():
        out = network_family(arch).function(forward(arch, parents.reshape(B * K, P), inputs, act))
        out = out.view(B, K, *out.shape[1:])
        return torch.einsum("bk,bk...->b...", weights.to(out), out)


def function_distance(arch: Architecture, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per network `[B]`: mean squared error to the target rendering (SIRENs), or cross-entropy of the
    outputs' softmax against the target probabilities (CNNs) — what the fine-tune minimises."""
    return network_family(arch).function_distance(outputs, target)


def finetune_to_function(arch: Architecture, params: torch.Tensor, target: torch.Tensor, inputs: torch.Tensor,
                         steps: int, lr: float = 1e-3, activation=None) -> torch.Tensor:
    """`steps` Adam steps of B networks `[B, P]` towards `target` (from `parents_target`), each network on its
    own loss (the summed loss keeps the gradients independent). Returns new parameters; `params` is untouched."""
    if steps <= 0:
        return params.detach().clone()
    p = params.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = function_distance(arch, forward(arch, p, inputs, activation), target).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return p.detach()


def finetune_to_parents(arch: Architecture, merged: torch.Tensor, parents: torch.Tensor, weights: torch.Tensor,
                        inputs: torch.Tensor, steps: int, lr: float = 1e-3, activation=None) -> torch.Tensor:
    """Fine-tune merged networks `[B, P]` towards the weighted mean function of their parents `[B, K, P]`."""
    target = parents_target(arch, parents, weights, inputs, activation)
    return finetune_to_function(arch, merged, target, inputs, steps, lr, activation)
