"""The permutation spec: for a chain it is Git Re-Basin's hand-written spec, the one group action it drives
agrees with a naive per-network implementation, and a tied spec describes a residual MLP — its symmetries
preserve the function, and weight matching recovers a planted element of it."""
import pytest
import torch

from gmnae.merge.matching import match_weights
from gmnae.merge.reference_matching import reference_axes, reference_element, weight_matching_reference
from gmnae.nn.graph import graph_layout
from gmnae.weightspace import (Architecture, PermutationSpec, apply_element, forward, invert,
                               permutation_spec, random_element, unflatten)


def test_chain_spec_is_git_rebasin_spec():
    """The spec of an MLP and a CNN, written by hand the way Git Re-Basin's `mlp_permutation_spec` does."""
    mlp = Architecture.siren((2, 5, 6, 1))
    axes_to_perm, _ = reference_axes(mlp)
    assert axes_to_perm == {"layers.0.weight": ("P_0", None), "layers.0.bias": ("P_0",),
                            "layers.1.weight": ("P_1", "P_0"), "layers.1.bias": ("P_1",),
                            "layers.2.weight": (None, "P_1"), "layers.2.bias": (None,)}
    cnn = Architecture.small_cnn("relu", channels=(1, 4, 3))
    axes_to_perm, _ = reference_axes(cnn)
    assert axes_to_perm == {"layers.0.weight": ("P_0", None, None, None), "layers.0.bias": ("P_0",),
                            "layers.1.weight": ("P_1", "P_0", None, None), "layers.1.bias": ("P_1",),
                            "layers.2.weight": (None, "P_1"), "layers.2.bias": (None,)}
    assert permutation_spec(cnn).sizes == (4, 3)
    # the graph layout types hidden nodes by unit group: one type per hidden layer of a chain
    lay = graph_layout(cnn)
    assert lay.node_type[lay.hidden_mask()].tolist() == [1] * 4 + [2] * 3


def _naive_apply(arch, params, g):
    """The action written out per network and per layer (the definition in weightspace/symmetry.py)."""
    out = []
    for k in range(len(params)):
        layers = [(w.clone(), b.clone()) for w, b in unflatten(arch, params[k:k + 1])]
        for l in range(len(arch.hidden_sizes)):
            p, q = g.perms[l][k], g.scales[l][k]
            w, b = layers[l]
            layers[l] = (w[:, p] * q.view(1, -1, *[1] * (w.dim() - 2)), b[:, p] * q)
            w2, b2 = layers[l + 1]
            layers[l + 1] = (w2[:, :, p] / q.view(1, 1, -1, *[1] * (w2.dim() - 3)), b2)
        out.append(torch.cat([t.reshape(1, -1) for wb in layers for t in wb], 1))
    return torch.cat(out)


def test_group_action_equals_naive_definition(trained_relu_cnns, trained_sirens):
    for (arch, params), kinds in ((trained_relu_cnns, "PS"), (trained_sirens, "PD")):
        g = random_element(arch, len(params), kinds, torch.Generator().manual_seed(4), dtype=params.dtype)
        torch.testing.assert_close(apply_element(arch, params, g), _naive_apply(arch, params, g), rtol=1e-14, atol=0)


# ---- a residual MLP: h0 = tanh(W0 x + b0), h1 = h0 + tanh(W1 h0 + b1), y = W2 h1 + b2 -----------------
LAYOUT = Architecture.siren((2, 12, 12, 1))  # the flat layout of its three layers (not a SIREN's forward)


def residual_spec() -> PermutationSpec:
    """The skip connection adds h0 to layer 1's output: both hidden layers must move as one unit group."""
    return permutation_spec(LAYOUT).tied(0, 1)


def residual_mlp(params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (w0, b0), (w1, b1), (w2, b2) = unflatten(LAYOUT, params)
    h0 = torch.tanh(torch.einsum("bij,nj->bni", w0, x) + b0[:, None])
    h1 = h0 + torch.tanh(torch.einsum("bij,bnj->bni", w1, h0) + b1[:, None])
    return torch.einsum("bij,bnj->bni", w2, h1) + b2[:, None]


@pytest.fixture(scope="module")
def trained_residual_mlps():
    """Six residual MLPs fit to one 2-d function from different seeds (a second of training)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 2, generator=gen, dtype=torch.float64) * 2 - 1
    y = (torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])).unsqueeze(0)
    params = (torch.randn(6, LAYOUT.n_params, generator=gen, dtype=torch.float64) * 0.5).requires_grad_(True)
    opt = torch.optim.Adam([params], lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = (residual_mlp(params, x) - y).pow(2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 0.01  # they did learn the function
    return params.detach(), x


def test_tied_spec_preserves_the_residual_function(trained_residual_mlps):
    params, x = trained_residual_mlps
    spec = residual_spec()
    assert spec.sizes == (12,) and len(spec.groups[0].axes) == 6
    g = random_element(spec, len(params), "PD", torch.Generator().manual_seed(1), dtype=params.dtype)
    moved = apply_element(spec, params, g)
    assert (moved - params).abs().max() > 1e-2
    torch.testing.assert_close(residual_mlp(moved, x), residual_mlp(params, x), rtol=1e-12, atol=1e-12)
    # the chain spec moves the two layers independently: not a symmetry of the residual network
    untied = random_element(LAYOUT, len(params), "P", torch.Generator().manual_seed(1), dtype=params.dtype)
    broken = apply_element(LAYOUT, params, untied)
    assert torch.all((residual_mlp(broken, x) - residual_mlp(params, x)).abs().amax(dim=(1, 2)) > 1e-3)
    # ... while for the chain network (no skip) it is one
    torch.testing.assert_close(forward(LAYOUT, broken, x), forward(LAYOUT, params, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kinds,method", [("P", "wm"), ("PD", "wm-signed")])
def test_weight_matching_recovers_planted_residual_element(trained_residual_mlps, kinds, method):
    params, x = trained_residual_mlps
    spec = residual_spec()
    g = random_element(spec, len(params), kinds, torch.Generator().manual_seed(3), dtype=params.dtype)
    moved = apply_element(spec, params, g)
    res = match_weights(spec, params, moved, method, seed=1, activation="tanh" if method == "wm-signed" else None)
    torch.testing.assert_close(res.aligned, params, rtol=0, atol=1e-12)
    truth = invert(g)
    assert torch.equal(res.element.perms[0], truth.perms[0])
    torch.testing.assert_close(res.element.scales[0], truth.scales[0], rtol=0, atol=0)
    torch.testing.assert_close(residual_mlp(res.aligned, x), residual_mlp(params, x), rtol=1e-12, atol=1e-12)


def test_residual_matching_agrees_with_one_pair_reference(trained_residual_mlps):
    params, _ = trained_residual_mlps
    spec = residual_spec()
    a, b = params[0::2], params[1::2]  # independently trained: a real optimisation, several sweeps
    res = match_weights(spec, a, b, "wm", seed=5, solver="scipy")
    assert torch.all(res.sweeps > 1)
    for k in range(len(a)):
        ref = reference_element(spec, weight_matching_reference(spec, a[k], b[k], seed=5), dtype=a.dtype)
        assert torch.equal(res.element.perms[0][k], ref.perms[0][0])


def test_spec_rejects_inconsistent_groups():
    spec = permutation_spec(Architecture.siren((2, 5, 6, 1)))
    with pytest.raises(ValueError, match="different sizes"):
        spec.tied(0, 1)
    with pytest.raises(ValueError, match="unknown activation"):
        match_weights(spec, torch.zeros(1, spec.n_params), torch.zeros(1, spec.n_params), "wm-scale",
                      activation="swish")
    with pytest.raises(ValueError, match="activation="):
        match_weights(spec, torch.zeros(1, spec.n_params), torch.zeros(1, spec.n_params), "wm-scale")
