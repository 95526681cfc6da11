"""Graph view of a batch of networks of one architecture (docs/design.md §4).

Neurons are nodes, weights are edges. Node feature: the neuron's bias (input neurons: the
constant 1). Edge feature: the weight, `k = arch.max_kernel_numel` values (a conv edge carries its
flattened kernel, a dense edge its scalar zero-padded to k).

Node layers are numbered 0 (input) .. L (output), L = arch.n_layers; edge block l (1..L) holds the
edges of weight layer l-1, from node layer l-1 to node layer l, shaped like the weight: `[out, in]`.

Two forms of the same graph:

- `DenseGraph`: per node layer `[B, n_l, 1]`, per edge block `[B, n_out, n_in, k]` (views of the
  weights where no padding is needed) -- what the dense execution path consumes;
- `EdgeListGraph`: flat node features `[B*N, 1]`, edge features `[B*E, k]`, `edge_index [2, B*E]`
  (row 0 source, row 1 destination, global node ids `b*N + local`), per node / per edge the network
  it belongs to and its type id -- what the edge-list path consumes.

Type ids index the positional embeddings: every input neuron and every output neuron is its own
node type, the hidden neurons of one layer share one type; edges have one type per block.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from gmnae.weightspace import Architecture, permutation_spec, unflatten

INPUT, HIDDEN, OUTPUT = 0, 1, 2  # node roles


@dataclass(frozen=True)
class GraphLayout:
    """Static, per-architecture facts of the graph (one network; local node ids)."""

    arch: Architecture
    widths: tuple[int, ...]          # neurons per node layer, input .. output
    node_offsets: tuple[int, ...]    # first local node id of each node layer (len L+2, last = N)
    edge_offsets: tuple[int, ...]    # first local edge id of each block 1..L (len L+1, last = E)
    edge_dim: int                    # k: features per edge
    node_role: torch.Tensor          # [N] INPUT / HIDDEN / OUTPUT
    node_layer: torch.Tensor         # [N] node layer 0..L
    node_type: torch.Tensor          # [N] positional-embedding id
    edge_type: torch.Tensor          # [E] block index 0..L-1
    edge_src: torch.Tensor           # [E] local source node
    edge_dst: torch.Tensor           # [E] local destination node

    @property
    def n_layers(self) -> int:
        return len(self.widths) - 1

    @property
    def n_nodes(self) -> int:
        return self.node_offsets[-1]

    @property
    def n_edges(self) -> int:
        return self.edge_offsets[-1]

    @property
    def n_inputs(self) -> int:
        return self.widths[0]

    @property
    def n_outputs(self) -> int:
        return self.widths[-1]

    @property
    def hidden_widths(self) -> tuple[int, ...]:
        return self.widths[1:-1]

    @property
    def n_hidden(self) -> int:
        return sum(self.hidden_widths)

    @property
    def n_node_types(self) -> int:
        return self.widths[0] + len(self.hidden_widths) + self.widths[-1]

    @property
    def n_edge_types(self) -> int:
        return self.n_layers

    def input_mask(self) -> torch.Tensor:
        return self.node_role == INPUT

    def hidden_mask(self) -> torch.Tensor:
        return self.node_role == HIDDEN

    def output_mask(self) -> torch.Tensor:
        return self.node_role == OUTPUT


@lru_cache(maxsize=64)
def graph_layout(arch: Architecture) -> GraphLayout:
    widths = arch.layer_widths
    L = len(widths) - 1
    # Hidden node types come from the permutation spec: nodes one permutation moves share a type (so the
    # positional embeddings keep the encoder invariant); the units of node layer l are weight l-1's rows.
    spec = permutation_spec(arch)
    hidden_type = {l: spec.group_of_axis(2 * (l - 1), 0) for l in range(1, L)}
    node_offsets = [0]
    for n in widths:
        node_offsets.append(node_offsets[-1] + n)
    role, layer, ntype = [], [], []
    for l, n in enumerate(widths):
        for v in range(n):
            layer.append(l)
            if l == 0:
                role.append(INPUT)
                ntype.append(v)
            elif l == L:
                role.append(OUTPUT)
                ntype.append(widths[0] + (L - 1) + v)
            else:
                role.append(HIDDEN)
                ntype.append(widths[0] + hidden_type[l])
    edge_offsets, etype, src, dst = [0], [], [], []
    for l in range(1, L + 1):
        n_in, n_out = widths[l - 1], widths[l]
        o = torch.arange(n_out).repeat_interleave(n_in)
        i = torch.arange(n_in).repeat(n_out)
        dst.append(node_offsets[l] + o)
        src.append(node_offsets[l - 1] + i)
        etype.append(torch.full((n_in * n_out,), l - 1))
        edge_offsets.append(edge_offsets[-1] + n_in * n_out)
    return GraphLayout(
        arch=arch, widths=tuple(widths), node_offsets=tuple(node_offsets), edge_offsets=tuple(edge_offsets),
        edge_dim=arch.max_kernel_numel,
        node_role=torch.tensor(role), node_layer=torch.tensor(layer), node_type=torch.tensor(ntype),
        edge_type=torch.cat(etype), edge_src=torch.cat(src), edge_dst=torch.cat(dst))


@dataclass
class DenseGraph:
    """Per-layer blocks of a batch of B networks of one architecture."""

    layout: GraphLayout
    nodes: list[torch.Tensor]   # per node layer l = 0..L: [B, n_l, 1] (layer 0: ones, else bias)
    edges: list[torch.Tensor]   # per block l = 1..L: [B, n_l, n_{l-1}, k]

    @property
    def batch_size(self) -> int:
        return self.nodes[0].shape[0]


def dense_graph(arch: Architecture, params: torch.Tensor, pad: bool = True, layout: GraphLayout | None = None) -> DenseGraph:
    """`params [B, P]` -> `DenseGraph`. With `pad=False` each block keeps its own kernel size."""
    layout = layout or graph_layout(arch)
    k = layout.edge_dim
    B = params.shape[0]
    nodes = [params.new_ones(B, arch.n_inputs, 1)]
    edges = []
    for w, b in unflatten(arch, params):
        w = w.reshape(*w.shape[:3], -1) if w.dim() == 5 else w.unsqueeze(-1)
        if pad and w.shape[-1] < k:
            w = torch.nn.functional.pad(w, (0, k - w.shape[-1]))
        edges.append(w)
        nodes.append(b.unsqueeze(-1))
    return DenseGraph(layout, nodes, edges)


@dataclass
class EdgeListGraph:
    """A batch of graphs as one disjoint union: flat nodes and edges with global ids."""

    layout: GraphLayout
    batch_size: int
    x: torch.Tensor            # [B*N, 1] node features
    edge_attr: torch.Tensor    # [B*E, k] edge features
    edge_index: torch.Tensor   # [2, B*E] (source, destination), global node ids
    node_batch: torch.Tensor   # [B*N] network of each node
    edge_batch: torch.Tensor   # [B*E] network of each edge
    node_type: torch.Tensor    # [B*N] positional-embedding id
    node_role: torch.Tensor    # [B*N] INPUT / HIDDEN / OUTPUT
    edge_type: torch.Tensor    # [B*E] block index

    @property
    def n_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def input_mask(self) -> torch.Tensor:
        return self.node_role == INPUT

    @property
    def hidden_mask(self) -> torch.Tensor:
        return self.node_role == HIDDEN

    @property
    def output_mask(self) -> torch.Tensor:
        return self.node_role == OUTPUT


@lru_cache(maxsize=32)
def _edge_list_index(arch: Architecture, batch: int, device: torch.device):
    layout = graph_layout(arch)
    N, E = layout.n_nodes, layout.n_edges
    node_batch = torch.arange(batch).repeat_interleave(N)
    edge_batch = torch.arange(batch).repeat_interleave(E)
    shift = edge_batch * N
    edge_index = torch.stack([layout.edge_src.repeat(batch) + shift, layout.edge_dst.repeat(batch) + shift])
    out = dict(edge_index=edge_index, node_batch=node_batch, edge_batch=edge_batch,
               node_type=layout.node_type.repeat(batch), node_role=layout.node_role.repeat(batch),
               edge_type=layout.edge_type.repeat(batch))
    return {key: v.to(device) for key, v in out.items()}


def edge_list_graph(arch: Architecture, params: torch.Tensor) -> EdgeListGraph:
    """`params [B, P]` -> `EdgeListGraph` (nodes network-major: input, hidden layers, output)."""
    dense = dense_graph(arch, params)
    B = params.shape[0]
    x = torch.cat(dense.nodes, dim=1).reshape(-1, 1)
    edge_attr = torch.cat([e.reshape(B, -1, e.shape[-1]) for e in dense.edges], dim=1).reshape(-1, dense.edges[0].shape[-1])
    idx = _edge_list_index(arch, B, params.device)
    return EdgeListGraph(dense.layout, B, x, edge_attr, **idx)
