"""ScaleGMN: a graph metanetwork invariant to hidden-neuron permutations, sign flips and positive scaling.

    enc = ScaleGMNEncoder(arch, EncoderConfig.inr())
    z = enc(params)                                # [B, latent_dim]
    z = enc(params, activation=zoo.activations(split))  # per-network activations (symmetry="hetero", mixed zoos)
    z = enc(params, path="edge")                  # same parameters, edge-list execution path

The math (docs/design.md §4). Under a group element, a hidden node's state transforms by its factor `q_i`
and an edge `j -> i` by `q_i / q_j` (input and output nodes: q = 1). Every block keeps that:

- initial projections are bias-free; learned positional vectors are multiplied into hidden node and
  edge states, added to input/output node states;
- `canon` is folded into the first layer of every invariant MLP ("gate"): the layer sees `r·Wz` with
  `r = 1/sqrt(|z|^2 + eps^2)` for positive scaling (so it sees `W z/|z|`), and is symmetrised,
  `act(y + b) + act(-y + b)` with `y` odd in z, for sign flips (that is `rho(z) + rho(-z)`);
  `hetero` picks per network the group of its activation (`weightspace.registry`): scale or sign;
- equivariant blocks `f(z) = (A z) ⊙ g(canon z)` with `A` bias-free: `f(q z) = q f(z)`;
- forward message `m_ij = z ⊙ g(canon z)`, `z = (E e_ij) ⊙ (V x_j)` (transforms like q_i), summed at i
  (`f_msg` with its linear map A moved behind the sum, where it merges into the update -- see EdgeMessage);
- node update `x_i <- x_i + f_upd([x_i ‖ Σ_j m_ij (‖ Σ_k b_ik)])`, plain MLPs on input/output nodes;
  dropout on the node states between layers (as published);
- edge update `e_ij <- e_ij + (B e_ij) ⊙ ψ(c_j, c_i)` with B = E, `c` an invariant embedding of the node
  state, ψ a one-layer MLP on the pair (its linear part computed per node);
- bidirectional: node j also receives, from each i of the next layer, `x_j ⊙ h(canon[V x_i ‖ (E e_ij) ⊙ (W x_j)])`
  -- the receiver's own state times an invariant of the pair (both parts inside transform like q_i),
  so it transforms like q_j for positive scaling as well as signs (the published `e_ij · x_i` does not);
- readout: MLP over `[Σ_hidden h(canon x_v) ‖ input-node states ‖ output-node states]` -> latent.

`symmetry="permutation"` drops the constraints (linear maps get biases, no canon): a permutation-only GMN.

Two execution paths share every parameter and give the same numbers (to float rounding):
`dense` runs per-layer blocks `[B, n_out, n_in, d]` with broadcasting (no index gathers; the first
layer never materialises the projected edges, it folds the projection into the first matmul);
`edge` runs on a flat edge list with gathers and scatter sums (`gmnae.nn.scatter`).

Speed (CPU): the per-edge gate runs through `_GatedEdge`, a hand-written backward with ~40% fewer passes
over the per-edge tensors than autograd's; batches run in cache-sized chunks of networks (networks are
independent); `cfg.compile` adds torch.compile on top. `gmnae bench --only encoder` measures all of it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmnae.weightspace import Architecture
from gmnae.weightspace.functional import activation_codes
from gmnae.weightspace.registry import MIXED, activation as activation_row, group_masks

from .config import EncoderConfig
from .graph import DenseGraph, EdgeListGraph, GraphLayout, dense_graph, edge_list_graph, graph_layout
from .scatter import scatter_sum

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
        z = a * c
        h = F.linear(z, W, w_b)
        if h_add is not None:
            h = h.add_(h_add)
        sq = torch.linalg.vector_norm(z, dim=-1, keepdim=True).square_()
        if sq_add is not None:
            sq = sq.add_(sq_add)
        r = sq.div_(n).add_(eps2).rsqrt_()
        y = h.mul_(r)
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
        dW = dh2.t() @ z2 if need[2] else None
        dwb = dh2.sum(0) if has_wb and need[3] else None
        dh_add = dh.sum_to_size(h_add_shape) if h_add_shape is not None and need[4] else None
        dz_lin = (dh2 @ W).view(z.shape)
        dz = dz_lin if dz is None else dz.add_(dz_lin)
        dsq = t.mul_(r).mul_(r).mul_(-0.5 / n)             # dL/d(sq) with r = (sq/n + eps2)^-1/2
        dz = dz.addcmul_(z, dsq, value=2.0)
        dsq_add = dsq.sum_to_size(sq_add_shape) if sq_add_shape is not None and need[5] else None
        da = (dz * c).sum_to_size(a_shape) if need[0] else None
        dc = (dz * a).sum_to_size(c_shape) if need[1] else None
        return da, dc, dW, dwb, dh_add, dsq_add, db, None, None, None, None


def gated_edge(a, c, lin: nn.Linear, b, s, eps2: float, *, h_add=None, sq_add=None, n=None, times_z=True,
               fused: bool = True):
    """The per-edge gate (see `_GatedEdge`); `fused=False` runs the same math through autograd."""
    n = n or a.shape[-1]
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
        self.fused = self.fusable

    def forward(self, eE: torch.Tensor, vx: torch.Tensor, canon: Canon) -> torch.Tensor:
        if self.fusable:
            return gated_edge(eE, vx, self.lin, self.gate.bias, canon.sgn, self.eps2, fused=self.fused)
        z = eE * vx
        return z * self.tail(self.gate(self.lin(z), _rms_factor(z, eps2=self.eps2), canon))


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


class ScaleGMNLayer(nn.Module):
    """One round of message passing with node and (unless `last`) edge updates."""

    def __init__(self, cfg: EncoderConfig, last: bool):
        super().__init__()
        d, unc = cfg.d, cfg.symmetry == "permutation"
        self.d, self.last, self.bidirectional = d, last, cfg.bidirectional
        self.skip, self.mean = cfg.skip, cfg.aggregation == "mean"
        self.eps2 = cfg.canon_eps ** 2
        self.act = _ACT[cfg.activation]
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

    def message(self, eE, vx_src, canon):
        return self.msg(eE, vx_src, canon)

    def back_message(self, eE, wx_src, hva_dst, sqv_dst, canon):
        """h(canon[V x_i ‖ (E e_ij) ⊙ (W x_j)]): the gate's first layer is split over the two parts, and r
        normalises the whole input (|V x_i|^2 + |zb|^2)."""
        if self.back_fusable:
            return gated_edge(eE, wx_src, self.back_edge, self.back_gate.bias, canon.sgn, self.eps2,
                              h_add=hva_dst, sq_add=sqv_dst, n=2 * self.d, times_z=False, fused=self.msg.fused)
        zb = eE * wx_src
        h = self.back_edge(zb) + hva_dst
        r = _rms_factor(zb, sqv_dst, self.eps2)
        return self.back_tail(self.back_gate(h, r, canon))

    def edge_update(self, e, eE, pc_src, qc_dst):
        """`e + (B e) ⊙ ψ(c_j, c_i)` with B = E: the one d x d map per edge feeds both the message and the
        update (a third fewer per-edge matmuls than separate E and B; B's role -- mixing the edge's channels
        before the invariant gate -- is the same)."""
        psi = self.act(pc_src + qc_dst)
        if not self.skip:
            return eE * psi
        if isinstance(e, tuple):
            w, m = e
            e = w * m[0] if w.shape[-1] == 1 else w @ m
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
        msgs, backs, eEs = [x.new_zeros(x.shape[0], lay.widths[0], self.d)], [], []
        for l in range(1, L + 1):
            eE = self.edge_project(edges[l - 1])
            eEs.append(eE)
            m = self.message(eE, vx[:, None, sl[l - 1]], ce).sum(2)
            msgs.append(m / lay.widths[l - 1] if self.mean else m)
            if self.bidirectional:
                g = self.back_message(eE, wx[:, None, sl[l - 1]], hva[:, sl[l], None], sqv[:, sl[l], None], ce).sum(1)
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
        pc, qc = self.psi_src(c), self.psi_dst(c)
        edges = [self.edge_update(edges[l - 1], eEs[l - 1], pc[:, None, sl[l - 1]], qc[:, sl[l], None])
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


class ScaleGMNEncoder(nn.Module):
    """Invariant ScaleGMN encoder: `[B, P]` parameter vectors of `arch` -> `[B, latent_dim]`."""

    def __init__(self, arch: Architecture, cfg: EncoderConfig | None = None):
        super().__init__()
        cfg = cfg or (EncoderConfig.inr() if arch.family == "siren" else EncoderConfig.cnn())
        if not isinstance(cfg, EncoderConfig):
            cfg = EncoderConfig.from_dict(cfg)
        self.arch, self.cfg = arch, cfg
        self.layout = lay = graph_layout(arch)
        self.latent_dim = cfg.latent_dim
        d = cfg.d
        unc = cfg.symmetry == "permutation"
        self.node_proj = nn.Parameter(torch.empty(d).uniform_(-1.0, 1.0))      # Linear(1, d, bias=False)
        self.edge_proj = nn.Linear(lay.edge_dim, d, bias=False)
        # positional vectors: one per input neuron, per hidden layer, per output neuron; one per edge block
        n0, nl, nh_layers = lay.widths[0], lay.widths[-1], len(lay.hidden_widths)
        node_pos = torch.randn(lay.n_node_types, d)
        node_pos[n0:n0 + nh_layers] = 1.0 + 0.1 * torch.randn(nh_layers, d)
        self.node_pos = nn.Parameter(node_pos)
        self.edge_pos = nn.Parameter(1.0 + 0.1 * torch.randn(lay.n_edge_types, d))
        self.layers = nn.ModuleList(ScaleGMNLayer(cfg, last=(t == cfg.n_layers - 1)) for t in range(cfg.n_layers))
        self.readout_node = InvariantMLP(d, d, d, cfg.mlp_layers, cfg, unc)
        self.readout = PlainMLP(d + (n0 + nl) * d, cfg.latent_dim, d, cfg.mlp_layers, cfg)
        hidden_type = torch.zeros(lay.n_node_types, dtype=torch.bool)
        hidden_type[n0:n0 + nh_layers] = True
        self.register_buffer("hidden_type", hidden_type, persistent=False)
        # one constant per weight/bias tensor (cfg.input_scale), set from the zoo by set_input_scale
        self.register_buffer("param_scale", torch.ones(arch.n_params))
        self._compiled = None

    def set_input_scale(self, sample: torch.Tensor) -> None:
        """`cfg.input_scale="layer-rms"`: scale each tensor by 1 / its RMS over `sample [N, P]` (networks of the zoo).

        A positive constant per tensor commutes with permutations, sign flips and positive scaling, so the
        encoder stays exactly invariant; it only brings every layer to unit scale at the input."""
        if self.cfg.input_scale == "none":
            return
        from gmnae.weightspace.layout import param_slices

        scale = torch.ones(self.arch.n_params)
        for sl in param_slices(self.arch):
            rms = sample[:, sl].double().pow(2).mean().sqrt().item()
            scale[sl] = 1.0 / max(rms, 1e-12)
        self.param_scale.copy_(scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before param_scale existed: no scaling
        state_dict.setdefault(prefix + "param_scale", torch.ones(self.arch.n_params))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- symmetry flags per network -----------------------------------------------------
    def canon(self, params: torch.Tensor, activation=None) -> Canon:
        """Per-network flags (`sgn`, `nrm` as `[B]` tensors or scalars) for this batch."""
        eps = self.cfg.canon_eps
        mode = self.cfg.symmetry
        if mode == "permutation":
            return Canon(None, None, eps)
        if mode == "sign":
            return Canon(-1.0, None, eps)
        if mode == "scale":
            return Canon(None, True, eps)
        # hetero: each network's group from the registry (scale -> normalise, sign -> symmetrise, none -> neither)
        act = self.arch.activation if activation is None else activation
        if isinstance(act, str):
            if act == MIXED:
                raise ValueError("symmetry='hetero' on a mixed-activation zoo: pass each network's activation "
                                 "(enc(params, activation=zoo.activations(split)))")
            group = activation_row(act).group_name
            return Canon(-1.0 if group == "sign" else 1.0, True if group == "scale" else None, eps)
        codes = activation_codes(act, params.shape[0], params.device)
        if codes.numel() != params.shape[0]:
            raise ValueError(f"{codes.numel()} activations for {params.shape[0]} networks")
        sign, scale = group_masks(codes)
        n_scale, n_sign = int(scale.sum()), int(sign.sum())
        nrm = True if n_scale == scale.numel() else None if n_scale == 0 else scale
        if n_sign == sign.numel() or n_sign == 0:
            return Canon(-1.0 if n_sign else 1.0, nrm, eps)
        return Canon(torch.where(sign, -1.0, 1.0).to(params.dtype), nrm, eps)

    # ---- forward ----------------------------------------------------------------------------
    def forward(self, params: torch.Tensor, activation=None, *, path: str | None = None) -> torch.Tensor:
        """`params [B, P]` -> latent `[B, latent_dim]`.

        activation: None (the architecture's), a name, or per-network names / codes (index into
        `gmnae.weightspace.ACTIVATIONS`) -- needed by symmetry="hetero" on mixed zoos.
        path: override `cfg.path` for this call ("dense" | "edge"; same parameters, same results).
        """
        path = path or self.cfg.path
        if path not in ("dense", "edge"):
            raise ValueError(f"unknown path {path!r}; expected 'dense' or 'edge'")
        if params.dim() != 2 or params.shape[1] != self.arch.n_params:
            raise ValueError(f"expected params [B, {self.arch.n_params}] for {self.arch.describe()}, "
                             f"got {tuple(params.shape)}")
        params = params * self.param_scale.to(params.dtype)
        B = params.shape[0]
        if not isinstance(activation, (str, type(None))) and len(activation) != B:
            raise ValueError(f"{len(activation)} activations for {B} networks")
        c = self.chunk_size(params)
        if not c or B <= c and not self.cfg.compile:
            return self._forward_chunk(params, activation, path)
        # Networks are independent (nothing mixes the batch), so the batch runs in chunks sized to keep the
        # per-edge tensors in cache -- on CPU that is ~2x faster than one big batch. Under torch.compile
        # every chunk gets the same shape (the last one padded) so one compiled graph serves all batches.
        outs = []
        for i in range(0, B, c):
            p, a = params[i:i + c], (activation if isinstance(activation, (str, type(None))) else activation[i:i + c])
            n = p.shape[0]
            if self.cfg.compile and n < c:
                p = torch.cat([p, p[:1].expand(c - n, -1)])
                if a is not None and not isinstance(a, str):
                    a = torch.cat([a, a[:1].expand(c - n)]) if torch.is_tensor(a) else list(a) + [a[0]] * (c - n)
            outs.append(self._forward_chunk(p, a, path)[:n])
        return torch.cat(outs)

    def chunk_size(self, params: torch.Tensor) -> int:
        """Networks per chunk: `cfg.chunk_size`, or automatically ~4M per-edge values (16 MB in float32) on
        CPU, none on GPU. Smaller chunks fit the caches better, but each chunk is another few hundred
        small ops, and on a busy machine every op is a thread hand-off that can stall: 4M is the knee."""
        if self.cfg.chunk_size is not None:
            return self.cfg.chunk_size
        if params.device.type != "cpu":
            return 0
        return max(1, (1 << 22) // (self.layout.n_edges * self.cfg.d))

    def _forward_chunk(self, params: torch.Tensor, activation, path: str) -> torch.Tensor:
        canon = self.canon(params, activation)
        if path == "edge":
            return self._forward_edges(params, canon)
        if self.cfg.compile:
            if self._compiled is None:
                self._compiled = torch.compile(self._forward_dense, dynamic=False)
            return self._compiled(params, canon)
        return self._forward_dense(params, canon)

    def _forward_dense(self, params: torch.Tensor, canon: Canon) -> torch.Tensor:
        lay = self.layout
        g: DenseGraph = dense_graph(self.arch, params, layout=lay)
        B, d = params.shape[0], self.cfg.d
        cn = canon.map(lambda t: t.view(B, 1, 1))
        ce = canon.map(lambda t: t.view(B, 1, 1, 1))
        n0, L = lay.widths[0], lay.n_layers
        p, pos = self.node_proj, self.node_pos
        xs = [(p + pos[:n0]).expand(B, n0, d)]
        for l in range(1, L):
            xs.append((g.nodes[l] * p) * pos[n0 + l - 1])
        xs.append(g.nodes[L] * p + pos[n0 + L - 1:])
        x = torch.cat(xs, 1)
        edges = [(w, self.edge_proj.weight.t() * self.edge_pos[l]) for l, w in enumerate(g.edges)]
        for layer in self.layers:
            x, edges = layer.forward_dense(x, edges, lay, cn, ce)
            x = F.dropout(x, self.cfg.dropout, self.training)
        nh = lay.n_hidden
        h = self.readout_node(x[:, n0:n0 + nh], cn).sum(1)
        feat = torch.cat([h, x[:, :n0].reshape(B, -1), x[:, n0 + nh:].reshape(B, -1)], -1)
        return self.readout(feat)

    def _edge_index(self, g: EdgeListGraph, canon: Canon) -> dict:
        hidden = torch.nonzero(g.hidden_mask).squeeze(1)
        idx = {"hidden": hidden, "io": torch.nonzero(~g.hidden_mask).squeeze(1),
               "input": torch.nonzero(g.input_mask).squeeze(1), "output": torch.nonzero(g.output_mask).squeeze(1),
               "canon_hidden": canon.map(lambda t: t[g.node_batch[hidden]].unsqueeze(1))}
        if self.cfg.aggregation == "mean":
            ones = torch.ones(g.edge_index.shape[1], 1, dtype=g.x.dtype, device=g.x.device)
            idx["in_deg"] = scatter_sum(ones, g.edge_index[1], g.n_nodes).clamp_min(1)
            idx["out_deg"] = scatter_sum(ones, g.edge_index[0], g.n_nodes).clamp_min(1)
        return idx

    def _forward_edges(self, params: torch.Tensor, canon: Canon) -> torch.Tensor:
        g = edge_list_graph(self.arch, params)
        B = g.batch_size
        cn = canon.map(lambda t: t[g.node_batch].unsqueeze(1))
        ce = canon.map(lambda t: t[g.edge_batch].unsqueeze(1))
        idx = self._edge_index(g, canon)
        pos = self.node_pos[g.node_type]
        x0 = g.x * self.node_proj
        x = torch.where(self.hidden_type[g.node_type].unsqueeze(1), x0 * pos, x0 + pos)
        e = (g.edge_attr @ self.edge_proj.weight.t()) * self.edge_pos[g.edge_type]
        for layer in self.layers:
            x, e = layer.forward_edges(x, e, g, idx, cn, ce)
            x = F.dropout(x, self.cfg.dropout, self.training)
        hidden = idx["hidden"]
        h = scatter_sum(self.readout_node(x.index_select(0, hidden), idx["canon_hidden"]),
                        g.node_batch.index_select(0, hidden), B)
        feat = torch.cat([h, x.index_select(0, idx["input"]).reshape(B, -1),
                          x.index_select(0, idx["output"]).reshape(B, -1)], -1)
        return self.readout(feat)
