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
over the per-edge tensors than autograd's; with `cfg.edge_kernel="auto"` (the default) the gate (messages
summed inside) and the edge update run as native kernels for d <= 64, one pass over the per-edge rows each
way (`gated_edge_native`; `python -m benchmarks --only fused`), and for d > 64 as pointwise chains compiled
by Inductor around torch's matmuls (`gated_edge_compiled`; `--only published roofline`); batches run in
cache-sized chunks of networks (networks are independent); `cfg.compile` compiles the whole dense path
instead (the compiled graph uses the torch gate). `python -m benchmarks --only encoder` measures all of it.

Files: `invariant_blocks` (Canon, gates, invariant / equivariant / plain MLPs), `gated_edge` (the fused
per-edge kernel), `scalegmn_layer` (one message-passing layer, both paths); this module: the encoder.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmnae.weightspace import Architecture
from gmnae.weightspace.family import network_family
from gmnae.weightspace.functional import activation_codes
from gmnae.weightspace.registry import MIXED, activation as activation_row, group_masks
from gmnae.weightspace.sine_phase import canonicalize_sine_phase

from .config import EncoderConfig
from .graph import DenseGraph, EdgeListGraph, dense_graph, edge_list_graph, graph_layout
from .invariant_blocks import Canon, InvariantMLP, PlainMLP
from .scalegmn_layer import ScaleGMNLayer
from .scatter import scatter_sum

class ScaleGMNEncoder(nn.Module):
    """Invariant ScaleGMN encoder: `[B, P]` parameter vectors of `arch` -> `[B, latent_dim]`."""

    def __init__(self, arch: Architecture, cfg: EncoderConfig | None = None):
        super().__init__()
        cfg = cfg or (EncoderConfig.cnn() if network_family(arch).classifies else EncoderConfig.inr())
        if not isinstance(cfg, EncoderConfig):
            cfg = EncoderConfig.from_dict(cfg)
        self.arch, self.cfg = arch, cfg
        if cfg.phase_canonical:
            canonicalize_sine_phase(arch, torch.zeros(1, arch.n_params))  # a clear error for non-SIRENs now
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

        if self.cfg.phase_canonical:
            sample = canonicalize_sine_phase(self.arch, sample)
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
        if self.cfg.phase_canonical:
            params = canonicalize_sine_phase(self.arch, params)
        params = params * self.param_scale.to(params.dtype)
        B = params.shape[0]
        if not isinstance(activation, (str, type(None))) and len(activation) != B:
            raise ValueError(f"{len(activation)} activations for {B} networks")
        c = self.chunk_size(params)
        if not c or B <= c and not self.cfg.compile:
            return self._forward_chunk(params, activation, path)
        # Networks are independent (nothing mixes the batch), so the batch runs in chunks sized to keep the
        # per-edge tensors in cache (benchmarks/README.md has the measurement). Under torch.compile
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
        small ops; 4M is where the two balance (benchmarks/README.md)."""
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
