"""The invariant and equivariant building blocks of the ScaleGMN encoder (docs/design.md §4).

`Canon` carries how a batch's networks are treated (sign flips, positive scaling, per network for
`hetero`); `Gate` is the first layer of every invariant MLP with the canon folded in (`r·Wz` made
scale-free, symmetrised `act(y + b) + act(-y + b)` for sign flips); `InvariantMLP` is `g(canon z)`,
`EquivariantBlock` is `(A z) ⊙ g(canon z)`, `PlainMLP` the unconstrained MLP of input/output nodes
and the readout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig

_ACT = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu, "tanh": torch.tanh}  # the encoder's own MLPs


def _sumsq(z: torch.Tensor) -> torch.Tensor:
    return (z * z).sum(-1, keepdim=True)


class Canon:
    """How the invariant maps treat the networks of one batch, shaped for one tensor layout.

    sgn: None (no sign symmetry), -1.0 (sign symmetry for all), or a tensor broadcasting against the
         rows (+1: the network's group is positive scaling, -1: sign flips) -- hetero batches;
    nrm: None (no scale symmetry), True (all), or a bool tensor (normalise this network's rows).
    """

    def __init__(self, sgn=None, nrm=None, eps: float = 1e-8):
        self.sgn, self.nrm, self.eps2 = sgn, nrm, eps * eps

    def factor(self, sq: torch.Tensor | None):
        """Row factor r with `r·z` invariant to positive scaling, from `sq = |z|^2 [..., 1]`; None: no scaling."""
        if self.nrm is None:
            return None
        r = torch.rsqrt(sq + self.eps2)
        if self.nrm is True:
            return r
        return torch.where(self.nrm, r, torch.ones_like(r))

    def map(self, fn) -> "Canon":
        """Reshape/gather the per-network tensors (for another layout); scalars pass through."""
        sgn = fn(self.sgn) if torch.is_tensor(self.sgn) else self.sgn
        nrm = fn(self.nrm) if torch.is_tensor(self.nrm) else self.nrm
        c = Canon(sgn, nrm)
        c.eps2 = self.eps2
        return c


def _sym_act(act, y: torch.Tensor, b: torch.Tensor, s) -> torch.Tensor:
    """`act(y + b)`, symmetrised to `act(y + b) + act(s·y + b)` when `s` is given (s = -1: even in y)."""
    a = act(y + b)
    if s is None:
        return a
    if isinstance(s, float):
        return a + a if s == 1.0 else a + act(torch.rsub(y, b))
    return a + act((y * s).add_(b))


def _gate_act(act, h: torch.Tensor, r: torch.Tensor, b: torch.Tensor, s) -> torch.Tensor:
    """`_sym_act(act, h * r, b, s)` with the scaling fused into the bias add."""
    a = act(torch.addcmul(b, h, r))
    if s is None:
        return a
    if isinstance(s, float):
        return a + a if s == 1.0 else a + act(torch.addcmul(b, h, r, value=-1.0))
    return a + act(torch.addcmul(b, h, r * s))


def _rms_factor(z: torch.Tensor, extra_sq: torch.Tensor | None = None, eps2: float = 1e-16) -> torch.Tensor:
    """`1 / sqrt(mean(z^2) + eps^2)` per row (`extra_sq`: squared norm of further parts of the row)."""
    n = z.shape[-1]
    sq = torch.linalg.vector_norm(z, dim=-1, keepdim=True).square()
    if extra_sq is not None:
        sq = sq + extra_sq
        n = 2 * n
    return torch.rsqrt(sq / n + eps2)


class Gate(nn.Module):
    """First layer of an invariant MLP, applied to `h = W z` computed outside (so it can be fused with
    the equivariant linear part): `act(γ·LN(r·h) + β)`, plus `act(-γ·LN(r·h) + β)` where sign flips are
    symmetries. `r` makes the input scale-free (canon for positive scaling).

    `layer_norm=False` is the per-edge form: no LN (the input is RMS-normalised by r instead, and γ would be
    redundant with W), which keeps the per-edge work to one matmul and a few pointwise passes.
    """

    def __init__(self, dim: int, act: str, layer_norm: bool):
        super().__init__()
        self.dim, self.act, self.layer_norm = dim, _ACT[act], layer_norm
        if layer_norm:
            self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, h: torch.Tensor, r: torch.Tensor | None, canon: Canon) -> torch.Tensor:
        if not self.layer_norm and r is not None:
            return _gate_act(self.act, h, r, self.bias, canon.sgn)
        if r is not None:
            h = h * r
        y = F.layer_norm(h, (self.dim,), self.weight, None) if self.layer_norm else h
        return _sym_act(self.act, y, self.bias, canon.sgn)


class Tail(nn.Module):
    """The layers of an MLP after its first activation: [Linear, LN, act]*, Linear."""

    def __init__(self, hidden: int, out: int, n_layers: int, act: str, layer_norm: bool):
        super().__init__()
        mods: list[nn.Module] = []
        if n_layers > 1:
            for _ in range(n_layers - 2):
                mods += [nn.Linear(hidden, hidden), nn.LayerNorm(hidden) if layer_norm else nn.Identity(),
                         _ActModule(act)]
            mods.append(nn.Linear(hidden, out))
        elif hidden != out:
            raise ValueError(f"a one-layer MLP needs hidden == out ({hidden} != {out})")
        self.net = nn.Sequential(*mods)

    def forward(self, x):
        return self.net(x)


class _ActModule(nn.Module):
    def __init__(self, act: str):
        super().__init__()
        self.fn = _ACT[act]

    def forward(self, x):
        return self.fn(x)


class InvariantMLP(nn.Module):
    """`g(canon(z))`: invariant to the node's group action (canon folded into the first layer)."""

    def __init__(self, d_in: int, d_out: int, hidden: int, n_layers: int, cfg: EncoderConfig, bias: bool):
        super().__init__()
        hidden = d_out if n_layers == 1 else hidden
        self.lin = nn.Linear(d_in, hidden, bias=bias)
        self.gate = Gate(hidden, cfg.activation, cfg.layer_norm)
        self.tail = Tail(hidden, d_out, n_layers, cfg.activation, cfg.layer_norm)

    def forward(self, z: torch.Tensor, canon: Canon) -> torch.Tensor:
        r = canon.factor(_sumsq(z)) if canon.nrm is not None else None
        return self.tail(self.gate(self.lin(z), r, canon))


class EquivariantBlock(nn.Module):
    """`f(z) = (A z) ⊙ g(canon z)` on node states; A and g's first linear run as one fused matmul."""

    def __init__(self, d_in: int, d_out: int, hidden: int, n_layers: int, cfg: EncoderConfig, bias: bool):
        super().__init__()
        hidden = d_out if n_layers == 1 else hidden
        self.d_out, self.hidden = d_out, hidden
        self.proj = nn.Linear(d_in, d_out + hidden, bias=bias)
        self.gate = Gate(hidden, cfg.activation, cfg.layer_norm)
        self.tail = Tail(hidden, d_out, n_layers, cfg.activation, cfg.layer_norm)

    def forward(self, z: torch.Tensor, canon: Canon) -> torch.Tensor:
        a, h = self.proj(z).split((self.d_out, self.hidden), dim=-1)
        r = canon.factor(_sumsq(z)) if canon.nrm is not None else None
        return a * self.tail(self.gate(h, r, canon))


class PlainMLP(nn.Module):
    """Linear, [LN, act, Linear]* -- for input/output nodes and the readout (no constraints)."""

    def __init__(self, d_in: int, d_out: int, hidden: int, n_layers: int, cfg: EncoderConfig):
        super().__init__()
        if n_layers == 1:
            self.net = nn.Linear(d_in, d_out)
            return
        mods: list[nn.Module] = [nn.Linear(d_in, hidden)]
        for i in range(n_layers - 1):
            mods += [nn.LayerNorm(hidden) if cfg.layer_norm else nn.Identity(), _ActModule(cfg.activation)]
            mods.append(nn.Linear(hidden, hidden if i < n_layers - 2 else d_out))
        self.net = nn.Sequential(*mods)

    def forward(self, x):
        return self.net(x)

