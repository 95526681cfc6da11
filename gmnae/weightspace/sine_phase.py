"""The phase canonicalization of SIRENs: one representative per orbit of sin's period and oddness.

A hidden unit of a SIREN computes `sin(w0 (w·x + b))`. Two exact symmetries act on it beyond permutations:

- period: `b -> b + π/w0` negates the unit's output (`sin(θ + π) = -sin θ`), undone by negating its
  outgoing weights; two such steps (`2π/w0`) change nothing;
- oddness: `(w, b) -> (-w, -b)` also negates the output (`sin(-θ) = -sin θ`): the sign symmetry the
  ScaleGMN encoder is built invariant to.

The encoder knows the second, not the first, and with w0 = 30 a bias spread of ±1 spans ~20 half-periods, so
networks that compute the same function can reach it from far-apart weights (the zoos forged here keep their
biases within a quarter period, where this map is a sign flip: `experiments/fmnist_inr/phase.py`). The published ScaleGMN rewrites
every INR of its zoos before training (its `phase_canonicalization` script, the `switch_to_canon` key).
This is the same idea as one exact, batched map: each hidden bias goes to `[0, π/(2 w0)]` --

    k = floor(b / P), β = b - k P          (P = π/w0; outgoing weights times (-1)^k)
    if β > P/2: w -> -w, β -> P - β        (sin(π - θ) = sin θ: outgoing weights unchanged)

-- so a network and any network its period, sign or both map it to land on the same parameters (up to
round-off at the interval's ends), and the function is unchanged (`tests/weightspace/test_sine_phase.py`
renders both).
"""
from __future__ import annotations

import math

import torch

from .architecture import Architecture
from .layout import unflatten


def canonicalize_sine_phase(arch: Architecture, params: torch.Tensor) -> torch.Tensor:
    """`params [B, P]` of SIRENs -> a new `[B, P]` computing the same functions, every hidden bias in `[0, π/(2 w0)]`."""
    if arch.activation != "sine" or any(l.layer_type != "dense" for l in arch.layers):
        raise ValueError(f"the phase canonicalization is for SIRENs (dense layers, sine); {arch.describe()} is not one")
    out = params.clone()
    layers = unflatten(arch, out)
    period = math.pi / arch.w0
    for (w, b), (w_next, _) in zip(layers[:-1], layers[1:]):
        k = torch.floor(b / period)
        beta = b - k * period
        odd = torch.remainder(k, 2.0) != 0                      # b moved by an odd number of half-periods
        w_next.mul_(torch.where(odd, -1.0, 1.0).to(out.dtype).unsqueeze(-2))  # columns = this layer's units
        flip = beta > 0.5 * period
        w.mul_(torch.where(flip, -1.0, 1.0).to(out.dtype).unsqueeze(-1))     # rows = this layer's units
        b.copy_(torch.where(flip, period - beta, beta).clamp_(0.0, 0.5 * period))
    return out
