"""Loss-barrier metrics of interpolation curves (docs/design.md §6), vectorised over pairs.

All functions take losses `[..., L]` on a λ grid `[L]` from 0 to 1 (default: the even grid) and
reduce the last axis:

    barrier(c)         max_λ L(λ) − ½(L(0) + L(1))          Git Re-Basin, Def. 2.2 (Ainsworth et al.)
    barrier_linear(c)  max_λ [L(λ) − ((1−λ)L(0) + λL(1))]   against the line between the endpoint losses
                                                             (Deep-Align's variant; ≥ 0 since it is 0 at the ends)
    auc(c)             ∫_0^1 [L(λ) − ((1−λ)L(0) + λL(1))] dλ   trapezoid rule, relative to that line
    auc(c, relative=False)   ∫_0^1 L(λ) dλ                  the plain area under the curve
    max_loss(c)        max_λ L(λ)                             the absolute maximum (for autoencoder paths,
                                                             whose reconstructed endpoints carry their own error)

For a score where higher is better (accuracy) pass `higher_is_better=True` to `barrier_metrics`:
every metric is computed on the negated curve and reported with the sign that makes a positive
number mean "worse in the middle": barrier = mean(endpoints) − min, `max` becomes `min` accuracy.
"""
from __future__ import annotations

import torch


def _grid(losses: torch.Tensor, lambdas: torch.Tensor | None) -> torch.Tensor:
    L = losses.shape[-1]
    if lambdas is None:
        return torch.linspace(0.0, 1.0, L, dtype=losses.dtype, device=losses.device)
    lambdas = torch.as_tensor(lambdas, dtype=losses.dtype, device=losses.device)
    if lambdas.shape[-1] != L:
        raise ValueError(f"{lambdas.shape[-1]} λ values for curves of {L} points")
    return lambdas


def endpoint_line(losses: torch.Tensor, lambdas: torch.Tensor | None = None) -> torch.Tensor:
    """(1−λ)L(0) + λL(1), the straight line between the endpoint losses, `[..., L]`.

    The endpoints are the first and last points of the curve, placed at λ = lambdas[0], lambdas[-1].
    """
    lam = _grid(losses, lambdas)
    lo, hi = lam[..., :1], lam[..., -1:]
    t = (lam - lo) / (hi - lo)
    return losses[..., :1] * (1 - t) + losses[..., -1:] * t


def barrier(losses: torch.Tensor) -> torch.Tensor:
    """Git Re-Basin loss barrier: max_λ L(λ) − ½(L(0) + L(1))."""
    return losses.amax(dim=-1) - 0.5 * (losses[..., 0] + losses[..., -1])


def barrier_linear(losses: torch.Tensor, lambdas: torch.Tensor | None = None) -> torch.Tensor:
    """max_λ [L(λ) − ((1−λ)L(0) + λL(1))]."""
    return (losses - endpoint_line(losses, lambdas)).amax(dim=-1)


def auc(losses: torch.Tensor, lambdas: torch.Tensor | None = None, relative: bool = True) -> torch.Tensor:
    """Trapezoid area under the curve; relative to the endpoint line (default) or absolute."""
    lam = _grid(losses, lambdas)
    y = losses - endpoint_line(losses, lam) if relative else losses
    return torch.trapezoid(y, x=lam, dim=-1)


def max_loss(losses: torch.Tensor) -> torch.Tensor:
    return losses.amax(dim=-1)


def barrier_metrics(losses: torch.Tensor, lambdas: torch.Tensor | None = None,
                    higher_is_better: bool = False) -> dict[str, torch.Tensor]:
    """All metrics of curves `[..., L]`: barrier, barrier_linear, auc, auc_abs, and max (or min)."""
    s = -1.0 if higher_is_better else 1.0
    c = s * losses
    out = {
        "barrier": barrier(c),
        "barrier_linear": barrier_linear(c, lambdas),
        "auc": auc(c, lambdas, relative=True),
        "auc_abs": s * auc(c, lambdas, relative=False),
    }
    out["min" if higher_is_better else "max"] = s * max_loss(c)
    return out
