"""The fused per-edge gate of the ScaleGMN encoder: one autograd Function with a hand-written backward.

The chain `z = a ⊙ c -> W z -> r·(.) -> symmetrised SiLU -> z ⊙ g` runs on every edge of every layer;
`gated_edge(..., fused=False)` is the same math through autograd (the tests compare the two). On CPU with
d <= 64 (scalegmn-small) `gated_edge` runs the native kernel instead (`gated_edge_native`, gated_edge.c:
one pass over the per-edge rows each way, the messages summed inside), with d > 64 (the published widths)
the Inductor-compiled chains (`gated_edge_compiled`); `_GatedEdge` is the fallback of both.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .invariant_blocks import _sumsq, _sym_act

class _GatedEdge(torch.autograd.Function):
    """The per-edge gate with a hand-written backward (SiLU only).

        z   = a ⊙ c                                   (a, c broadcast against each other)
        h   = W z + w_b (+ h_add)
        r   = ((|z|^2 (+ sq_add)) / n + eps2)^(-1/2)   (scale-free input: the canon for positive scaling)
        y   = h · r
        g   = silu(y + b) [+ silu(s·y + b)]           (s: None, a float, or a per-row tensor)
        out = z ⊙ g  (times_z) or g

    Autograd's generic backward of this chain makes ~75 passes over the per-edge tensors; this one ~45,
    which is most of the encoder's time on CPU (the chain runs on every edge of every layer).
    """

    @staticmethod
    def forward(ctx, a, c, W, w_b, h_add, sq_add, b, s, n, eps2, times_z):
        # Mixed precision (autocast): the d x d matmuls run in the autocast dtype (bf16: AMX tiles on recent
        # Xeons, ~10x fp32), the pointwise chain in the parameters' dtype (the rms factor, the gate and their
        # gradients stay fp32).
        dev = W.device.type
        ctx.amp = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        ctx.in_dtypes = (a.dtype, c.dtype)
        # only the smaller operand is cast; type promotion makes z fp32 in the one pass that computes it
        if a.numel() >= c.numel():
            c = c.to(W.dtype)
        else:
            a = a.to(W.dtype)
        z = a * c
        h = F.linear(z, W, w_b)
        if h_add is not None:
            h = h.to(W.dtype).add_(h_add)
        sq = torch.linalg.vector_norm(z, dim=-1, keepdim=True).square_()
        if sq_add is not None:
            sq = sq.add_(sq_add)
        r = sq.div_(n).add_(eps2).rsqrt_()
        y = h.mul_(r) if h.dtype == r.dtype else h * r  # bf16 h (autocast): promoted to fp32 here
        u1 = y + b
        g = F.silu(u1)
        u2 = None
        if isinstance(s, float) and s == 1.0:
            g = g.mul_(2.0)
        elif isinstance(s, float):
            u2 = torch.rsub(y, b) if s == -1.0 else (y * s).add_(b)
        elif s is not None:
            u2 = (y * s).add_(b)
        if u2 is not None:
            g = g.add_(F.silu(u2))
        out = z * g if times_z else g
        ctx.s, ctx.n, ctx.times_z = s, n, times_z
        ctx.shapes = (a.shape, c.shape, None if h_add is None else h_add.shape,
                      None if sq_add is None else sq_add.shape, w_b is not None)
        ctx.save_for_backward(a, c, z, W, y, r, u1, u2, g if times_z else None,
                              s if torch.is_tensor(s) else None)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        a, c, z, W, y, r, u1, u2, g, s_t = ctx.saved_tensors
        s, n = ctx.s, ctx.n
        a_shape, c_shape, h_add_shape, sq_add_shape, has_wb = ctx.shapes
        need = ctx.needs_input_grad
        if ctx.times_z:
            dg = dout * z
            dz = dout * g
        else:
            dg, dz = dout, None
        du1 = torch.ops.aten.silu_backward(dg, u1)
        if isinstance(s, float) and s == 1.0:
            du1 = du1.mul_(2.0)
            dy, dsum = du1, du1
        elif u2 is not None:
            du2 = torch.ops.aten.silu_backward(dg, u2)
            dsum = du1 + du2
            if isinstance(s, float):
                dy = du1.add_(du2, alpha=s)
            else:
                dy = du1.addcmul_(s_t, du2)
        else:
            dy, dsum = du1, du1
        d_out = y.shape[-1]
        db = dsum.reshape(-1, d_out).sum(0) if need[6] else None
        t = torch.linalg.vecdot(dy, y).unsqueeze(-1)       # Σ dy·h·r; dL/dr = t / r
        dh = dy.mul_(r)
        z2 = z.reshape(-1, z.shape[-1])
        dh2 = dh.reshape(-1, d_out)
        if ctx.amp is None:
            dW = dh2.t() @ z2 if need[2] else None
            dz_lin = (dh2 @ W).view(z.shape)
        else:  # the forward's matmul ran in the autocast dtype: so do its two backward matmuls
            dh_lo = dh2.to(ctx.amp)
            dW = (dh_lo.t() @ z2.to(ctx.amp)).to(W.dtype) if need[2] else None
            dz_lin = (dh_lo @ W.to(ctx.amp)).to(z.dtype).view(z.shape)
        dwb = dh2.sum(0) if has_wb and need[3] else None
        dh_add = dh.sum_to_size(h_add_shape) if h_add_shape is not None and need[4] else None
        dz = dz_lin if dz is None else dz.add_(dz_lin)
        dsq = t.mul_(r).mul_(r).mul_(-0.5 / n)             # dL/d(sq) with r = (sq/n + eps2)^-1/2
        dz = dz.addcmul_(z, dsq, value=2.0)
        dsq_add = dsq.sum_to_size(sq_add_shape) if sq_add_shape is not None and need[5] else None
        da = (dz * c).sum_to_size(a_shape).to(ctx.in_dtypes[0]) if need[0] else None
        dc = (dz * a).sum_to_size(c_shape).to(ctx.in_dtypes[1]) if need[1] else None
        return da, dc, dW, dwb, dh_add, dsq_add, db, None, None, None, None


def gated_edge(a, c, lin: nn.Linear, b, s, eps2: float, *, h_add=None, sq_add=None, n=None, times_z=True,
               fused: bool | str = True, reduce: int | None = None):
    """The per-edge gate (see `_GatedEdge`).

    fused: True / "auto" -- on CPU the native kernel (`gated_edge_native`: float32/64, d <= 64, a C compiler)
    where it applies, the compiled pointwise chains for d > 64 (`gated_edge_compiled`), else `_GatedEdge`;
    "torch" -- `_GatedEdge`; False -- the same math through autograd.
    reduce: sum the output over that dim (1 or 2 of `[B, n_out, n_in, d]`; the native kernel sums inside,
    never writing the per-edge output)."""
    n = n or a.shape[-1]
    if fused in (True, "auto") and not torch.compiler.is_compiling():
        from . import gated_edge_compiled as compiled
        from . import gated_edge_native as native

        if compiled.applies(lin.weight):
            return compiled.gated_edge(a, c, lin.weight, lin.bias, h_add, sq_add, b, s, n, eps2, times_z, reduce)

        if native.applies(a, c, lin.weight) and native.library(lin.weight.dtype, lin.weight.shape[0]) is not None:
            nat_reduce = reduce if reduce is not None and max(a.dim(), c.dim()) == 4 else None
            out = native._GatedEdgeNative.apply(a, c, lin.weight, lin.bias, h_add, sq_add, b, s, n, eps2, times_z,
                                                nat_reduce)
            return out if reduce is None or nat_reduce is not None else out.sum(reduce)
    out = _gated_edge(a, c, lin, b, s, eps2, h_add, sq_add, n, times_z, fused)
    return out if reduce is None else out.sum(reduce)


def _gated_edge(a, c, lin, b, s, eps2, h_add, sq_add, n, times_z, fused):
    if fused:
        return _GatedEdge.apply(a, c, lin.weight, lin.bias, h_add, sq_add, b, s, n, eps2, times_z)
    z = a * c
    h = lin(z)
    if h_add is not None:
        h = h + h_add
    sq = _sumsq(z)
    if sq_add is not None:
        sq = sq + sq_add
    g = _sym_act(F.silu, h * torch.rsqrt(sq / n + eps2), b, s)
    return z * g if times_z else g
