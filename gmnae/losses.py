"""Functional reconstruction losses (docs/design.md §5). Never weight-space MSE: the decoder chooses
its own representative of the symmetry orbit, so only the decoded network's *function* is compared.

Both return one value per network `[B]`, so callers can weight, mask (DDP padding) and average.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .weightspace import Architecture, cnn_forward, siren_render


def inr_render_mse(arch: Architecture, original: torch.Tensor, decoded: torch.Tensor,
                   coords: torch.Tensor) -> torch.Tensor:
    """MSE between the original and the decoded INRs rendered on `coords`; the original has no gradient."""
    with torch.no_grad():
        target = siren_render(arch, original, coords)
    return (siren_render(arch, decoded, coords) - target).pow(2).mean(dim=(1, 2))


def distillation_kl(arch: Architecture, teacher: torch.Tensor, student: torch.Tensor, images: torch.Tensor,
                    temperature: float, activation=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Knowledge distillation: KL(teacher_T || student_T) * T^2 per network, on a batch of task images.

    Returns (loss `[B]`, teacher logits `[B, N, C]`, student logits `[B, N, C]`).
    """
    with torch.no_grad():
        t_logits = cnn_forward(arch, teacher, images, activation)
    s_logits = cnn_forward(arch, student, images, activation)
    t_logp = F.log_softmax(t_logits / temperature, dim=-1)
    s_logp = F.log_softmax(s_logits / temperature, dim=-1)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean(-1)
    return kl * temperature**2, t_logits, s_logits


def teacher_label_ce(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's predicted class (argmax, T = 1), per network `[B]`.

    The hard-label agreement term: it rewards reproducing the teacher's *decisions*, mistakes included,
    which the softened KL weighs weakly next to the classes every teacher agrees on."""
    target = teacher_logits.argmax(-1)
    return F.cross_entropy(student_logits.transpose(1, 2), target, reduction="none").mean(-1)
