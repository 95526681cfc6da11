"""The per-edge step for wide encoders (d > 64): pointwise chains compiled by Inductor around torch's matmuls.

    out = _GatedEdgeCompiled.apply(a, c, W, w_b, h_add, sq_add, b, s, n, eps2, times_z, reduce)

The same math as `_GatedEdge` (gated_edge.py) and `e + eE * silu(p + q)`, cut at the matmuls: each stretch
of pointwise work between two matmuls is one Python function that `torch.compile` turns into a few C++ loops
(Inductor's CPU backend), so a per-edge tensor `[B, n_out, n_in, d]` is read and written a handful of times
per layer instead of ~60, and the d x d matmuls stay with oneDNN / MKL (bf16 on AMX under autocast). Why
not one compiled graph for the whole encoder (`cfg.compile`): Inductor then also takes the matmuls and the
autograd graph, which on CPU was slower than eager at d = 256 (docs/performance.md).

Per gate, forward: `fwd_pre` (z = a ⊙ c, its rms factor r, z in the matmul's dtype) -> h = W z ->
`fwd_post` (the gate, z ⊙ g, summed over the senders inside: the per-edge output is never written);
backward: `bwd_pre` (recomputes z, y, g from a, c, h; writes dh and the pointwise part of dz) -> dW, dh W ->
`bwd_post` (da, dc). Saved for the backward: a, c, h, r and z in the matmul's dtype (bf16 under autocast:
2 bytes a value) instead of `_GatedEdge`'s five float32 per-edge tensors.

Compiled once per process and variant (dynamic shapes: one kernel serves every block and batch) and cached
on disk by Inductor (`TORCHINDUCTOR_CACHE_DIR`, default `/tmp/torchinductor_$USER`); `COMPILE_SECONDS` has
each function's first call. With `GMNAE_NATIVE=0`, or once Inductor has failed to compile (no C++
compiler: one note on stderr), `applies()` is False and the encoder runs `_GatedEdge` and the torch edge
update (same math; the tests check the three agree).
"""
from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F

from .gated_edge_native import MAX_D, _compute_dtype

COMPILE_SECONDS: dict[str, float] = {}  # first call (compile or cache load) per pointwise function
# Bytes the compiled functions read and write (inputs once, outputs once), for the roofline
# (`benchmarks/roofline.py`): set to {"bytes": 0} to count. The aten-level counter cannot see inside them.
COUNTERS: dict | None = None
_broken = False  # Inductor failed once: the torch path from then on
_noted = False


def _sigmoids(y, b, s):
    """The gate's arguments and their sigmoids: `(u1, σ(u1), u2, σ(u2))`, u1 = y + b, u2 = s·y + b (None, None
    without a second half: s None, or s = 1 where both halves are equal).

    Sign flips (s = -1, or a per-network ±1 tensor as `Canon.sgn`): one exp per value instead of two, from
    exp(-u1) = exp(-b) / exp(y) and exp(-u2) = exp(-b) · exp(y), with exp(-b) one per channel. Exact while
    |y| <= 60 and |b| <= 60; beyond, both halves are saturated (σ within e^(|b| - 60) of 0 or 1)."""
    u1 = y + b
    if s is None or isinstance(s, float) and s == 1.0:
        return u1, torch.sigmoid(u1), None, None
    if isinstance(s, float) and s != -1.0:  # any other scalar (not used by the encoder): two sigmoids
        u2 = y * s + b
        return u1, torch.sigmoid(u1), u2, torch.sigmoid(u2)
    ey = torch.exp(y.clamp(-60.0, 60.0))
    eb = torch.exp(-b.clamp(-60.0, 60.0))
    sg1 = ey / (ey + eb)
    sg2 = 1.0 / (1.0 + eb * ey)                 # σ(b - y)
    if isinstance(s, float):
        return u1, sg1, b - y, sg2
    neg = s < 0                                 # per network: -1 sign flips, +1 positive scaling (u2 = u1)
    return u1, sg1, torch.where(neg, b - y, u1), torch.where(neg, sg2, sg1)


def _silu_grad(u: torch.Tensor) -> torch.Tensor:
    sg = torch.sigmoid(u)
    return sg * (1.0 + u * (1.0 - sg))


def gate_fwd_pre(a, c, sq_add, n: float, eps2: float, lo: torch.dtype, cd: torch.dtype):
    z = a.to(cd) * c.to(cd)
    sq = (z * z).sum(-1, keepdim=True)
    if sq_add is not None:
        sq = sq + sq_add.to(cd)
    return z.to(lo), torch.rsqrt(sq / n + eps2)


def gate_fwd_post(a, c, h, h_add, r, b, s, times_z: bool, reduce: int | None, cd: torch.dtype):
    y = h.to(cd)
    if h_add is not None:
        y = y + h_add.to(cd)
    y = y * r
    u1, sg1, u2, sg2 = _sigmoids(y, b, s)
    g = u1 * sg1
    if u2 is not None:
        g = g + u2 * sg2
    elif s is not None:  # s = 1: both halves equal
        g = g * 2.0
    out = a.to(cd) * c.to(cd) * g if times_z else g
    return out if reduce is None else out.sum(reduce)


def gate_bwd_pre(dout, a, c, h, h_add, r, b, s, n: float, times_z: bool, lo: torch.dtype, cd: torch.dtype,
                 need_db: bool, need_dsq: bool, need_dh_add: bool):
    z = a.to(cd) * c.to(cd)
    y = h.to(cd)
    if h_add is not None:
        y = y + h_add.to(cd)
    y = y * r
    dout = dout.to(cd)
    dg = dout * z if times_z else dout
    u1, sg1, u2, sg2 = _sigmoids(y, b, s)
    du1 = dg * sg1 * (1.0 + u1 * (1.0 - sg1))
    g = u1 * sg1
    if u2 is not None:
        du2 = dg * sg2 * (1.0 + u2 * (1.0 - sg2))
        dsum = du1 + du2
        dy = du1 - du2 if isinstance(s, float) and s == -1.0 else du1 + du2 * s
        g = g + u2 * sg2
    elif s is not None:
        du1 = du1 * 2.0
        g = g * 2.0
        dsum = dy = du1
    else:
        dsum = dy = du1
    t = (dy * y).sum(-1, keepdim=True)          # Σ dy·h·r: dL/dr = t / r
    dsq = t * r * r * (-0.5 / n)                # r = (sq / n + eps2)^-1/2
    dz = z * (2.0 * dsq)
    if times_z:
        dz = dz + dout * g
    # db is summed outside: a reduction over the rows inside made Inductor recompute the chain in a slow loop
    dh = dy * r
    dh_add = dh.sum_to_size(h_add.shape).to(h_add.dtype) if need_dh_add else None
    return dh.to(lo), dz, dsq if need_dsq else None, dsum if need_db else None, dh_add


def gate_bwd_post(dz_part, dz_lin, a, c, need_a: bool, need_c: bool, cd: torch.dtype):
    dz = dz_part + dz_lin.to(cd)
    da = (dz * c.to(cd)).sum_to_size(a.shape).to(a.dtype) if need_a else None
    dc = (dz * a.to(cd)).sum_to_size(c.shape).to(c.dtype) if need_c else None
    return da, dc


def update_fwd(e, x, p, q, cd: torch.dtype):
    out = x.to(cd) * F.silu(p.to(cd) + q.to(cd))
    return out if e is None else out + e.to(cd)


def update_bwd(dout, x, p, q, need_x: bool, need_p: bool, need_q: bool, cd: torch.dtype):
    u = p.to(cd) + q.to(cd)
    dout = dout.to(cd)
    dx = (dout * F.silu(u)).sum_to_size(x.shape).to(x.dtype) if need_x else None
    du = dout * x.to(cd) * _silu_grad(u)
    dp = du.sum_to_size(p.shape).to(p.dtype) if need_p else None
    dq = du.sum_to_size(q.shape).to(q.dtype) if need_q else None
    return dx, dp, dq


class _Compiled:
    """`fn` through torch.compile (dynamic shapes, one graph per variant); eager if compiling fails."""

    def __init__(self, fn):
        self.fn, self.compiled, self.name = fn, None, fn.__name__

    def __call__(self, *args):
        if COUNTERS is not None:  # count what a fused kernel reads and writes (see COUNTERS), not its eager ops
            from torch.utils._python_dispatch import _disable_current_modes

            with _disable_current_modes():
                out = self.fn(*args)
            flat = [t for t in (*args, *(out if isinstance(out, tuple) else (out,))) if torch.is_tensor(t)]
            COUNTERS["bytes"] += sum(min(t.numel() * t.element_size(), t.untyped_storage().nbytes()) for t in flat)
            return out
        if _broken:
            return self.fn(*args)
        if self.compiled is None:
            self.compiled = _compile(self.fn)
        t0 = time.perf_counter()
        try:
            with torch.profiler.record_function(self.name):
                out = self.compiled(*args)
        except Exception as exc:  # noqa: BLE001  (Inductor could not build: the same math eagerly, then torch)
            _give_up(exc)
            return self.fn(*args)
        if self.name not in COMPILE_SECONDS:
            COMPILE_SECONDS[self.name] = time.perf_counter() - t0
        return out


def _compile(fn):
    global _noted
    import torch._dynamo.config as dynamo_config

    if not _noted and os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) == "0":
        print(f"gmnae: compiling the per-edge step (d > 64) with torch.compile: about a minute the first time (2 cores), "
              f"~15 s once Inductor has cached it ({_inductor_cache()})", file=sys.stderr)
        _noted = True

    # one graph per variant (dtype, sign mode, reduce dim, ...): more than dynamo's default 8 per function
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
    return torch.compile(fn, dynamic=True, fullgraph=True)


def _inductor_cache() -> str:
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()


def _give_up(exc: Exception) -> None:
    global _broken
    if not _broken:
        msg = str(exc).strip().splitlines()
        print(f"gmnae: torch.compile could not build the per-edge step ({msg[0] if msg else type(exc).__name__}); "
              "the torch gate runs instead (slower for d > 64)", file=sys.stderr)
    _broken = True


_gate_fwd_pre, _gate_fwd_post = _Compiled(gate_fwd_pre), _Compiled(gate_fwd_post)
_gate_bwd_pre, _gate_bwd_post = _Compiled(gate_bwd_pre), _Compiled(gate_bwd_post)
_update_fwd, _update_bwd = _Compiled(update_fwd), _Compiled(update_bwd)


def _matmul_dtype(W: torch.Tensor) -> torch.dtype:
    dev = W.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else W.dtype


class _GatedEdgeCompiled(torch.autograd.Function):
    """`_GatedEdge`'s math (gated_edge.py); `reduce`: the output summed over that dim (the senders)."""

    @staticmethod
    def forward(ctx, a, c, W, w_b, h_add, sq_add, b, s, n, eps2, times_z, reduce=None):
        lo, cd = _matmul_dtype(W), _compute_dtype(W)
        with torch.autocast(W.device.type, enabled=False):
            zl, r = _gate_fwd_pre(a, c, sq_add, float(n), float(eps2), lo, cd)
            h = F.linear(zl, W.to(lo), None if w_b is None else w_b.to(lo))
            out = _gate_fwd_post(a, c, h, h_add, r, b, s, times_z, reduce, cd)
        ctx.save_for_backward(a, c, W, zl, h, r, h_add, s if torch.is_tensor(s) else None, b)
        ctx.s, ctx.n, ctx.times_z, ctx.reduce, ctx.lo, ctx.cd = s, float(n), times_z, reduce, lo, cd
        ctx.has_wb, ctx.sq_add_shape = w_b is not None, None if sq_add is None else sq_add.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        a, c, W, zl, h, r, h_add, s_t, b = ctx.saved_tensors
        s = s_t if s_t is not None else ctx.s
        need = ctx.needs_input_grad
        if ctx.reduce is not None:
            dout = dout.unsqueeze(ctx.reduce)
        dh, dz_part, dsq, dsum, dh_add = _gate_bwd_pre(dout, a, c, h, h_add, r, b, s, ctx.n, ctx.times_z, ctx.lo,
                                                     ctx.cd, need[6], ctx.sq_add_shape is not None and need[5],
                                                     h_add is not None and need[4])
        d_out = dh.shape[-1]
        dh2 = dh.reshape(-1, d_out)
        db = dsum.reshape(-1, d_out).sum(0) if dsum is not None else None
        dW = (dh2.t() @ zl.reshape(-1, zl.shape[-1])).to(W.dtype) if need[2] else None
        dz_lin = (dh2 @ W.to(ctx.lo)).view(zl.shape)
        da, dc = _gate_bwd_post(dz_part, dz_lin, a, c, need[0], need[1], ctx.cd)
        dwb = dh2.sum(0, dtype=ctx.cd) if ctx.has_wb and need[3] else None
        dsq_add = dsq.sum_to_size(ctx.sq_add_shape) if dsq is not None else None
        return da, dc, dW, dwb, dh_add, dsq_add, db, None, None, None, None, None


class _EdgeUpdateCompiled(torch.autograd.Function):
    """`e + x * silu(p + q)` (`e` None: `x * silu(p + q)`); the gradient of `e` is the output's."""

    @staticmethod
    def forward(ctx, e, x, p, q):
        cd = _compute_dtype(p)
        out = _update_fwd(e, x, p, q, cd)
        ctx.save_for_backward(x, p, q)
        ctx.cd, ctx.e_dtype = cd, None if e is None else e.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        x, p, q = ctx.saved_tensors
        need = ctx.needs_input_grad
        dx, dp, dq = _update_bwd(dout, x, p, q, need[1], need[2], need[3], ctx.cd)
        de = dout.to(ctx.e_dtype) if ctx.e_dtype is not None and need[0] else None
        return de, dx, dp, dq


def applies(W: torch.Tensor) -> bool:
    """Where this path runs under `edge_kernel="auto"`: CPU encoders wider than the native kernels' MAX_D,
    unless `GMNAE_NATIVE=0` or Inductor has failed."""
    return (W.device.type == "cpu" and W.shape[0] > MAX_D and W.dtype in (torch.float32, torch.float64)
            and not _broken and os.environ.get("GMNAE_NATIVE", "1") != "0")


def gated_edge(a, c, W, w_b, h_add, sq_add, b, s, n, eps2, times_z, reduce):
    return _GatedEdgeCompiled.apply(a, c, W, w_b, h_add, sq_add, b, s, n, eps2, times_z, reduce)


def edge_update(e, x, p, q):
    return _EdgeUpdateCompiled.apply(e, x, p, q)
