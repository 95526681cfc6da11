"""The activation registry: each row's group really is a symmetry of its function, every consumer reads
its facts from the row, and LeakyReLU — added as one row — works end to end on a forged zoo."""
import numpy as np
import pytest
import torch

from gmnae.training.autoencoder import resolve_symmetry
from gmnae.evaluation.merge_evaluation import MergeEvaluation, baseline_methods
from gmnae.merge.matching import check_method, default_method
from gmnae.merge.pairs import orbit_symmetries
from gmnae.tasks import digits
from gmnae.weightspace import REGISTRY, apply_element, build_module, forward, natural_symmetries
from gmnae.weightspace.registry import ACTIVATIONS, activation, code_of

NAMES = list(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_group_is_a_symmetry_of_the_function(name):
    """Checked on the numbers: sign group <=> odd, scale group <=> positively homogeneous."""
    row = activation(name)
    z = torch.linspace(-3, 3, 601, dtype=torch.float64)
    f = lambda x: row.fn(x, 1.5)  # noqa: E731  (w0 = 1.5: sine's frequency must not matter)
    odd = torch.allclose(f(-z), -f(z), rtol=0, atol=1e-12)
    homogeneous = all(torch.allclose(f(a * z), a * f(z), rtol=1e-12, atol=1e-12) for a in (0.3, 2.5))
    assert odd == (row.group_name == "sign")
    assert homogeneous == (row.group_name == "scale")
    torch.testing.assert_close(row.module(1.5)(z), f(z), rtol=0, atol=0)  # nn.Module and function agree


@pytest.mark.parametrize("name", NAMES)
def test_every_consumer_reads_the_row(name):
    row = activation(name)
    letter = {"sign": "D", "scale": "S", "none": ""}[row.group_name]
    assert natural_symmetries(name) == "P" + letter
    assert orbit_symmetries(name) == (("P", letter, "P" + letter) if letter else ("P",))
    method = {"sign": "wm-signed", "scale": "wm-scale", "none": "wm"}[row.group_name]
    assert default_method(name) == method
    assert baseline_methods(name) == tuple(dict.fromkeys(("naive", "wm", method)))
    assert resolve_symmetry("auto", name) == {"sign": "sign", "scale": "scale", "none": "permutation"}[row.group_name]
    for other in ("wm-signed", "wm-scale"):
        if other != method:
            with pytest.raises(ValueError, match=other):
                check_method(other, name)
    check_method(method, name)
    assert ACTIVATIONS[code_of(name)] == name


def test_codes_are_stable_and_unknown_names_fail():
    """Batches carry activation codes: the rows that existed keep their positions."""
    assert ACTIVATIONS[:3] == ("sine", "relu", "tanh")
    assert resolve_symmetry("auto", "mixed") == "hetero"
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation("swish")


def test_leaky_relu_zoo_is_trained_and_runs_as_modules(digits_leaky_cnn_zoo):
    zoo = digits_leaky_cnn_zoo
    assert zoo.arch.activation == "leaky_relu"
    acc = np.concatenate([zoo.read_meta(s)["test_accuracy"] for s in zoo.splits])
    assert np.median(acc) > 0.5  # 10 classes: chance is 0.1
    params = torch.from_numpy(zoo.read_params("train")[:2]).double()
    x = digits.classification_images("test")[0][:32].double()
    net = build_module(zoo.arch, params[0])
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in net)
    torch.testing.assert_close(net(x), forward(zoo.arch, params[:1], x)[0], rtol=1e-9, atol=1e-9)


def test_leaky_relu_merge_evaluation_pairs(digits_leaky_cnn_zoo):
    """The evaluation's pair sets come from the row: orbit pairs of the scale group, planted through the spec."""
    ev = MergeEvaluation(digits_leaky_cnn_zoo, "train", pairs_per_type=4, noise_std=0.005)
    assert list(ev.pair_sets) == ["orbit-P", "orbit-S", "orbit-PS", "independent"]
    ps = ev.pair_sets["orbit-PS"]
    noise = ps.b - apply_element(ps.arch, ps.a, ps.element)
    assert abs(noise.std().item() - 0.005) < 0.0005  # b = g·a + σ·ε, nothing else
    assert torch.all(ps.element.scales[0] > 0) and not torch.all(ps.element.scales[0] == 1)
