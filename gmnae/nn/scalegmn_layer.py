"""One ScaleGMN message-passing layer (node and edge updates) and its per-edge message.

Both execution paths live here: `forward_dense` on per-layer blocks `[B, n_out, n_in, d]`,
`forward_edges` on a flat edge list; the per-edge pieces are shared so the paths agree to rounding.
The math is in `gmnae.nn.scalegmn`'s docstring and docs/design.md §4.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import EncoderConfig
from .gated_edge import gated_edge
from .graph import EdgeListGraph, GraphLayout
from .invariant_blocks import _ACT, Canon, EquivariantBlock, Gate, InvariantMLP, PlainMLP, Tail, _rms_factor, _sumsq
from .scatter import scatter_sum

class EdgeMessage(nn.Module):
    """The per-edge message `z ⊙ g(canon z)`, z = (E e_ij) ⊙ (V x_j) transforming like q_i.

    This is `f_msg(z) = (A z) ⊙ g(canon z)` with the linear map A moved behind the gate and the sum
    (`A Σ_j z ⊙ g` equals `Σ_j A(z ⊙ g)`), where it merges into the node update's first linear map: one
    d x d matmul per edge (g's first layer) instead of two. g's first layer sees `z / rms(z)`: the canon
    for positive scaling, and what a LayerNorm would do for the other modes, at one reduction per edge.
    """

    def __init__(self, d: int, n_layers: int, cfg: EncoderConfig, bias: bool):
        super().__init__()
        self.eps2 = cfg.canon_eps ** 2
        self.lin = nn.Linear(d, d, bias=bias)
        self.gate = Gate(d, cfg.activation, False)
        self.tail = Tail(d, d, n_layers, cfg.activation, cfg.layer_norm)
        self.fusable = n_layers == 1 and cfg.activation == "silu"
        # True: the native kernel where it applies (gated_edge_native), else _GatedEdge; "torch": _GatedEdge
        self.fused = (True if cfg.edge_kernel == "auto" else cfg.edge_kernel) if self.fusable else False

    def forward(self, eE: torch.Tensor, vx: torch.Tensor, canon: Canon, reduce: int | None = None) -> torch.Tensor:
        """The messages, summed over dim `reduce` if given (the native gate sums them as it makes them)."""
        if self.fusable:
            return gated_edge(eE, vx, self.lin, self.gate.bias, canon.sgn, self.eps2, fused=self.fused, reduce=reduce)
        z = eE * vx
        m = z * self.tail(self.gate(self.lin(z), _rms_factor(z, eps2=self.eps2), canon))
        return m if reduce is None else m.sum(reduce)


class ScaleGMNLayer(nn.Module):
    """One round of message passing with node and (unless `last`) edge updates."""

    def __init__(self, cfg: EncoderConfig, last: bool):
        super().__init__()
        d, unc = cfg.d, cfg.symmetry == "permutation"
        self.d, self.last, self.bidirectional = d, last, cfg.bidirectional
        self.skip, self.mean = cfg.skip, cfg.aggregation == "mean"
        self.eps2 = cfg.canon_eps ** 2
        self.act = _ACT[cfg.activation]
        self.native_update = cfg.activation == "silu" and cfg.edge_kernel == "auto"
        self.edge_lin = nn.Linear(d, d, bias=unc)                           # E (= B, see edge_update)
        self.src_lin = nn.Linear(d, d, bias=unc)                            # V
        self.msg = EdgeMessage(d, cfg.edge_mlp_layers, cfg, unc)
        n_in = 2 * d
        if cfg.bidirectional:
            n_in = 3 * d
            self.back_src = nn.Linear(d, d, bias=unc)                        # W (the receiver j's state)
            self.back_node = nn.Linear(d, d, bias=unc)                       # gate's first layer on V x_i
            self.back_edge = nn.Linear(d, d, bias=False)                     # ... and on (E e_ij) ⊙ (W x_j)
            self.back_gate = Gate(d, cfg.activation, False)
            self.back_tail = Tail(d, d, cfg.edge_mlp_layers, cfg.activation, cfg.layer_norm)
            self.back_fusable = self.msg.fusable
        self.upd_hidden = EquivariantBlock(n_in, d, d, cfg.mlp_layers, cfg, unc)
        self.upd_io = PlainMLP(n_in, d, d, cfg.mlp_layers, cfg)
        if not last:
            self.node_canon = InvariantMLP(d, d, d, cfg.mlp_layers, cfg, unc)
            self.psi_src = nn.Linear(d, d, bias=False)
            self.psi_dst = nn.Linear(d, d, bias=True)

    # -- per-edge pieces shared by both paths (same ops in the same order: the paths agree to rounding) ----
    def edge_project(self, e):
        """E e. `e` a tensor `[..., d]`, or the factored first-layer edge `(w [..., k], M [k, d])` = `w @ M`."""
        if isinstance(e, tuple):
            w, m = e
            eff = m @ self.edge_lin.weight.t()            # [k, d]: the initial projection folded in
            ue = w * eff[0] if w.shape[-1] == 1 else w @ eff
            if self.edge_lin.bias is not None:
                ue = ue + self.edge_lin.bias
        else:
            ue = self.edge_lin(e)
        return ue

    def message(self, eE, vx_src, canon, reduce=None):
        return self.msg(eE, vx_src, canon, reduce)

    def back_message(self, eE, wx_src, hva_dst, sqv_dst, canon, reduce=None):
        """h(canon[V x_i ‖ (E e_ij) ⊙ (W x_j)]): the gate's first layer is split over the two parts, and r
        normalises the whole input (|V x_i|^2 + |zb|^2). Summed over dim `reduce` if given."""
        if self.back_fusable:
            return gated_edge(eE, wx_src, self.back_edge, self.back_gate.bias, canon.sgn, self.eps2,
                              h_add=hva_dst, sq_add=sqv_dst, n=2 * self.d, times_z=False, fused=self.msg.fused,
                              reduce=reduce)
        zb = eE * wx_src
        h = self.back_edge(zb) + hva_dst
        r = _rms_factor(zb, sqv_dst, self.eps2)
        g = self.back_tail(self.back_gate(h, r, canon))
        return g if reduce is None else g.sum(reduce)

    def edge_update(self, e, eE, pc_src, qc_dst):
        """`e + (B e) ⊙ ψ(c_j, c_i)` with B = E: the one d x d map per edge feeds both the message and the
        update (a third fewer per-edge matmuls than separate E and B; B's role -- mixing the edge's channels
        before the invariant gate -- is the same)."""
        if self.skip and isinstance(e, tuple):
            w, m = e
            e = w * m[0] if w.shape[-1] == 1 else w @ m
        if self.native_update:  # d > 64 on CPU: compiled chains; d <= 64: the native kernel, one pass each way
            from . import gated_edge_compiled as compiled
            from .gated_edge_native import edge_update

            if compiled.applies(self.edge_lin.weight) and not torch.compiler.is_compiling():
                return compiled.edge_update(e if self.skip else None, eE, pc_src, qc_dst)
            out = edge_update(e if self.skip else None, eE, pc_src, qc_dst)
            if out is not None:
                return out
        psi = self.act(pc_src + qc_dst)
        if not self.skip:
            return eE * psi
        return torch.addcmul(e, eE, psi)

    def node_precompute(self, x):
        """Per-node linear maps the edges read: V x, and for the backward messages W x, the gate's
        first layer on V x, and |V x|^2."""
        vx = self.src_lin(x)
        if not self.bidirectional:
            return vx, None, None, None
        return vx, self.back_src(x), self.back_node(vx), _sumsq(vx)

    # -- dense path ------------------------------------------------------------------------
    def forward_dense(self, x, edges, lay: GraphLayout, cn: Canon, ce: Canon):
        """x `[B, N, d]` (nodes in layer order), edges: per block `[B, n_out, n_in, d]` (or factored)."""
        off = lay.node_offsets
        L = lay.n_layers
        sl = [slice(off[l], off[l + 1]) for l in range(L + 1)]
        vx, wx, hva, sqv = self.node_precompute(x)
        # per-layer blocks by split, not slicing: the backward of a split is one cat, of each slice a zeroed
        # [B, N, d] tensor (then summed)
        vxs = vx.split(lay.widths, 1)
        msgs, backs, eEs = [x.new_zeros(x.shape[0], lay.widths[0], self.d)], [], []
        for l in range(1, L + 1):
            eE = self.edge_project(edges[l - 1])
            eEs.append(eE)
            m = self.message(eE, vxs[l - 1][:, None], ce, reduce=2)
            msgs.append(m / lay.widths[l - 1] if self.mean else m)
            if self.bidirectional:
                g = self.back_message(eE, wx[:, None, sl[l - 1]], hva[:, sl[l], None], sqv[:, sl[l], None], ce, reduce=1)
                backs.append(x[:, sl[l - 1]] * (g / lay.widths[l] if self.mean else g))
        parts = [x, torch.cat(msgs, 1)]
        if self.bidirectional:
            backs.append(x.new_zeros(x.shape[0], lay.widths[-1], self.d))
            parts.append(torch.cat(backs, 1))
        u = torch.cat(parts, -1)
        n0, nh = lay.widths[0], lay.n_hidden
        new_hid = self.upd_hidden(u[:, n0:n0 + nh], cn)
        new_io = self.upd_io(torch.cat([u[:, :n0], u[:, n0 + nh:]], 1))
        new = torch.cat([new_io[:, :n0], new_hid, new_io[:, n0:]], 1)
        x = x + new if self.skip else new
        if self.last:
            return x, None
        c = self.node_canon(x, cn)
        pcs, qcs = self.psi_src(c).split(lay.widths, 1), self.psi_dst(c).split(lay.widths, 1)
        edges = [self.edge_update(edges[l - 1], eEs[l - 1], pcs[l - 1][:, None], qcs[l][:, :, None])
                 for l in range(1, L + 1)]
        return x, edges

    # -- edge-list path --------------------------------------------------------------------
    def forward_edges(self, x, e, g: EdgeListGraph, idx: dict, cn: Canon, ce: Canon):
        """x `[B*N, d]`, e `[B*E, d]`; `idx` holds index sets and degrees (see ScaleGMNEncoder._edge_index)."""
        src, dst = g.edge_index[0], g.edge_index[1]
        n = x.shape[0]
        vx, wx, hva, sqv = self.node_precompute(x)
        eE = self.edge_project(e)
        m = scatter_sum(self.message(eE, vx.index_select(0, src), ce), dst, n)
        parts = [x, m / idx["in_deg"] if self.mean else m]
        if self.bidirectional:
            b = self.back_message(eE, wx.index_select(0, src), hva.index_select(0, dst), sqv.index_select(0, dst), ce)
            b = scatter_sum(b, src, n)
            parts.append(x * (b / idx["out_deg"] if self.mean else b))
        u = torch.cat(parts, -1)
        hid, io = idx["hidden"], idx["io"]
        new = torch.empty_like(x)
        new = new.index_copy(0, hid, self.upd_hidden(u.index_select(0, hid), idx["canon_hidden"]))
        new = new.index_copy(0, io, self.upd_io(u.index_select(0, io)))
        x = x + new if self.skip else new
        if self.last:
            return x, None
        c = self.node_canon(x, cn)
        pc, qc = self.psi_src(c), self.psi_dst(c)
        return x, self.edge_update(e, eE, pc.index_select(0, src), qc.index_select(0, dst))
