"""Graph view of a batch of networks: features, types, masks, and the two forms agreeing."""
from __future__ import annotations

import torch

from gmnae.nn.graph import HIDDEN, INPUT, OUTPUT, dense_graph, edge_list_graph, graph_layout
from gmnae.weightspace import Architecture, unflatten


def test_layout_siren():
    arch = Architecture.siren()
    lay = graph_layout(arch)
    assert lay.widths == (2, 32, 32, 1) and lay.n_nodes == 67 and lay.n_edges == 2 * 32 + 32 * 32 + 32
    assert lay.edge_dim == 1
    assert int(lay.input_mask().sum()) == 2 and int(lay.hidden_mask().sum()) == 64 and int(lay.output_mask().sum()) == 1
    # each input and output neuron its own type, one type per hidden layer
    assert lay.n_node_types == 2 + 2 + 1
    assert lay.node_type.tolist() == [0, 1] + [2] * 32 + [3] * 32 + [4]
    assert lay.edge_type.bincount().tolist() == [64, 1024, 32]
    # edges go from layer l-1 to layer l
    assert (lay.node_layer[lay.edge_dst] == lay.node_layer[lay.edge_src] + 1).all()


def test_dense_graph_features_cnn():
    arch = Architecture.small_cnn("relu", padding="same", image_size=(8, 8))
    params = torch.randn(3, arch.n_params)
    g = dense_graph(arch, params)
    lay = g.layout
    assert lay.edge_dim == 9 and lay.widths == (1, 16, 16, 16, 10)
    layers = unflatten(arch, params)
    assert torch.equal(g.nodes[0], torch.ones(3, 1, 1))
    for l, (w, b) in enumerate(layers, start=1):
        assert torch.equal(g.nodes[l][..., 0], b)
        e = g.edges[l - 1]
        assert e.shape == (3, w.shape[1], w.shape[2], 9)
        if w.dim() == 5:  # conv: the flattened kernel
            assert torch.equal(e, w.reshape(3, w.shape[1], w.shape[2], 9))
        else:             # dense head: the scalar, zero-padded to 9
            assert torch.equal(e[..., 0], w) and (e[..., 1:] == 0).all()


def test_edge_list_matches_dense():
    arch = Architecture.small_cnn("tanh", padding="same", image_size=(8, 8))
    B = 4
    params = torch.randn(B, arch.n_params)
    d, g = dense_graph(arch, params), edge_list_graph(arch, params)
    lay = g.layout
    N, E = lay.n_nodes, lay.n_edges
    assert g.x.shape == (B * N, 1) and g.edge_attr.shape == (B * E, 9) and g.edge_index.shape == (2, B * E)
    assert g.node_batch.bincount().tolist() == [N] * B and g.edge_batch.bincount().tolist() == [E] * B
    # edges never cross networks, and every edge's feature is the weight between its two neurons
    src, dst = g.edge_index
    assert (g.node_batch[src] == g.edge_batch).all() and (g.node_batch[dst] == g.edge_batch).all()
    off = lay.node_offsets
    for k in torch.randint(0, B * E, (50,)).tolist():
        b = g.edge_batch[k].item()
        s, t = src[k].item() - b * N, dst[k].item() - b * N
        l = lay.node_layer[t].item()
        o, i = t - off[l], s - off[l - 1]
        assert torch.equal(g.edge_attr[k], d.edges[l - 1][b, o, i])
        assert g.edge_type[k].item() == l - 1
    # node features: inputs 1, otherwise the bias; roles and masks
    assert torch.equal(g.x.view(B, N), torch.cat(d.nodes, 1)[..., 0])
    roles = g.node_role.view(B, N)[0]
    assert roles.tolist() == [INPUT] + [HIDDEN] * 48 + [OUTPUT] * 10
    assert int(g.hidden_mask.sum()) == 48 * B and int(g.input_mask.sum()) == B and int(g.output_mask.sum()) == 10 * B
