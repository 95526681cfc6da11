"""Reconstruction losses (docs/design.md §5). Functional: the renderings (INR) or the predictions (CNN) of the
decoded network against its original's. Never plain weight-space MSE, which would ask the decoder for the input's
arbitrary orbit representative; the one parameter term, `aligned_param_distance`, first moves the input onto the
decoded network's units (weight matching), so it measures the distance between orbits and is invariant.

Both return one value per network `[B]`, so callers can weight, mask (DDP padding) and average.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..weightspace import Architecture, cnn_forward, siren_render


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


def centred_logit_mse(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """MSE between the teacher's and the student's logits, each centred over classes (softmax ignores a shift),
    per network `[B]`: every margin counts, the teacher's mistakes as much as its confident classes."""
    t = teacher_logits - teacher_logits.mean(-1, keepdim=True)
    s = student_logits - student_logits.mean(-1, keepdim=True)
    return (s - t).pow(2).mean(dim=(1, 2))


def aligned_param_distance(arch: Architecture, original: torch.Tensor, decoded: torch.Tensor, activation=None,
                           max_iter: int = 10) -> torch.Tensor:
    """Distance between each decoded network and its original *moved onto the decoded network's units*, per
    network `[B]`: for each weight/bias tensor ‖d − t‖² / (‖d‖² + ‖t‖²) (in [0, 2]; 0 only when equal), mean
    over tensors.

    Alignment: batched weight matching with the largest group the activation allows (`merge.matching.
    default_method`). Sign-symmetric activations (tanh, sine): `wm-signed` moves the original onto the decoded
    network. Scale-symmetric ones (ReLU): both networks are first brought to the unit-incoming-norm frame (the
    decoded one differentiably; `merge.matching.unit_normalisation`), then permuted by `wm` — comparing in the
    decoded network's *own* scale frame instead would multiply the original's outgoing weights by 1 / (a decoded
    unit's norm), without bound for the near-dead units of an early decoder. Other activations: `wm`.
    The aligned original computes the original's function (up to the frame's positive rescaling), so the loss
    depends on the original's orbit only, up to the matcher finding the same optimum, and its gradient pulls the
    decoded network towards the nearest member of that orbit: the decoder may choose any canonical form, as long
    as it is one network of the orbit. Relative per tensor, so no layer's scale dominates and none needs the zoo's
    statistics; symmetric and bounded, so the near-zero tensors of networks that never trained (they are in the
    zoos, at 0.04 accuracy) cannot blow it up. `activation`: the architecture's name, or per-network activation codes `[B]` for a mixed zoo.
    """
    from ..merge.matching import default_method, match_weights, unit_normalisation
    from ..weightspace.permutation_spec import permutation_spec
    from ..weightspace.registry import ACTIVATIONS
    from ..weightspace.symmetry import apply_element

    if activation is None or isinstance(activation, str):
        groups = [(activation or arch.activation, torch.ones(len(decoded), dtype=torch.bool, device=decoded.device))]
    else:
        codes = torch.as_tensor(activation).to(decoded.device)
        groups = [(ACTIVATIONS[int(c)], codes == c) for c in torch.unique(codes).tolist()]
    spec = permutation_spec(arch)
    out = decoded.new_zeros(len(decoded))
    for name, rows in groups:
        net_arch, method = arch.with_activation(name), default_method(name)
        dec, orig = decoded[rows], original[rows].to(decoded)
        if method == "wm-scale":
            dec = apply_element(net_arch, dec, unit_normalisation(net_arch, dec))
            with torch.no_grad():
                orig = apply_element(net_arch, orig, unit_normalisation(net_arch, orig))
            method = "wm"
        with torch.no_grad():
            target = match_weights(net_arch, dec.detach(), orig, method, max_iter=max_iter).aligned
        per_tensor = [(dec[:, a:b] - target[:, a:b]).pow(2).sum(-1)
                      / (dec[:, a:b].pow(2).sum(-1) + target[:, a:b].pow(2).sum(-1)).clamp_min(1e-12)
                      for a, b in spec.offsets()]
        out = out.index_put((rows.nonzero()[:, 0],), torch.stack(per_tensor, -1).mean(-1))
    return out
