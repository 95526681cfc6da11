"""The invariant parameter term of the autoencoder loss (losses.aligned_param_distance) and the centred-logit
term, on really trained CNNs: invariance under the input's own symmetries, against an independent computation."""
import pytest
import torch

from gmnae.training.losses import aligned_param_distance, centred_logit_mse
from gmnae.merge.matching import match_weights
from gmnae.tasks import digits
from gmnae.weightspace import cnn_forward
from gmnae.weightspace.registry import code_of
from gmnae.weightspace.symmetry import random_transform


def _decoded_near(arch, nets, symmetries, seed):
    """A stand-in for a decoded network: another member of the original's orbit, plus 1 % multiplicative noise."""
    g = torch.Generator().manual_seed(seed)
    moved = random_transform(arch, nets, symmetries, g, scale_range=(0.5, 2.0))
    return moved + 0.01 * moved.abs() * torch.randn(moved.shape, generator=g, dtype=moved.dtype)


@pytest.mark.parametrize("case, symmetries", [("trained_relu_cnns", "PS"), ("trained_tanh_cnns", "PD")])
def test_the_parameter_term_is_invariant_under_the_inputs_symmetries(case, symmetries, request):
    arch, nets = request.getfixturevalue(case)
    nets = nets[:6]
    decoded = _decoded_near(arch, nets, symmetries, seed=1)
    base = aligned_param_distance(arch, nets, decoded, arch.activation)
    for seed in (2, 3):  # the same inputs, each moved by a random element of its activation's group
        moved = random_transform(arch, nets, symmetries, torch.Generator().manual_seed(seed), scale_range=(0.5, 2.0))
        torch.testing.assert_close(aligned_param_distance(arch, moved, decoded, arch.activation), base,
                                   rtol=1e-6, atol=1e-12)
    # the alignment finds the orbit member: only the noise (1e-4 relative) is left, far below the unaligned distance
    unaligned = _relative(arch, decoded, nets)
    assert (base < 1e-3).all() and (unaligned > 0.05).all()


def _relative(arch, dec, target):
    """The per-tensor relative error, written out independently of the library code."""
    from gmnae.weightspace.permutation_spec import permutation_spec

    parts = [((dec[:, a:b] - target[:, a:b]) ** 2).sum(-1) / ((dec[:, a:b] ** 2).sum(-1) + (target[:, a:b] ** 2).sum(-1))
             for a, b in permutation_spec(arch).offsets()]
    return torch.stack(parts, -1).mean(-1)


def test_the_parameter_term_equals_matching_then_the_relative_error_per_activation(digits_cnn_zoo, trained_relu_cnns,
                                                                                 trained_tanh_cnns):
    """A mixed batch: ReLU networks compared in the unit-incoming-norm frame after `wm`, tanh ones after `wm-signed`."""
    from gmnae.merge.matching import unit_normalisation
    from gmnae.weightspace.symmetry import apply_element

    (relu_arch, relu), (tanh_arch, tanh) = trained_relu_cnns, trained_tanh_cnns
    nets = torch.cat([relu[:3], tanh[:3]])
    decoded = torch.cat([_decoded_near(relu_arch, relu[:3], "PS", 4), _decoded_near(tanh_arch, tanh[:3], "PD", 4)])
    codes = torch.tensor([code_of("relu")] * 3 + [code_of("tanh")] * 3)
    got = aligned_param_distance(digits_cnn_zoo.arch, nets, decoded, codes)

    def normalised(x):
        return apply_element(relu_arch, x, unit_normalisation(relu_arch, x))

    dec_relu, orig_relu = normalised(decoded[:3]), normalised(nets[:3])
    expected = torch.cat([
        _relative(relu_arch, dec_relu, match_weights(relu_arch, dec_relu, orig_relu, "wm", max_iter=10).aligned),
        _relative(tanh_arch, decoded[3:], match_weights(tanh_arch, decoded[3:], nets[3:], "wm-signed",
                                                        max_iter=10).aligned),
    ])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)


def test_gradient_flows_to_the_decoded_network_only(trained_relu_cnns):
    arch, nets = trained_relu_cnns
    decoded = _decoded_near(arch, nets[:2], "PS", 5).requires_grad_(True)
    aligned_param_distance(arch, nets[:2], decoded, "relu").sum().backward()
    assert decoded.grad is not None and decoded.grad.abs().sum() > 0


def test_centred_logit_mse_ignores_a_shift_and_sees_margins(trained_relu_cnns):
    arch, nets = trained_relu_cnns
    x = digits.classification_images("test")[0][:32].double()
    t, s = cnn_forward(arch, nets[:2], x), cnn_forward(arch, nets[2:4], x)
    assert torch.all(centred_logit_mse(t, t + 3.0) < 1e-20)  # softmax-equal logits cost nothing
    tc, sc = t - t.mean(-1, keepdim=True), s - s.mean(-1, keepdim=True)
    torch.testing.assert_close(centred_logit_mse(t, s), ((sc - tc) ** 2).mean((1, 2)))
    assert (centred_logit_mse(t, s) > 0).all()
