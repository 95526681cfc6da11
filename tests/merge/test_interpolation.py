"""Interpolation paths and curves: endpoints, agreement with direct forwards, chunking, pair sets."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmnae.merge import (ClassifierEvaluator, InrEvaluator, barrier_metrics, lambda_grid, linear_path, method_curves,
                         method_path, zoo_evaluator, zoo_pairs)
from gmnae.tasks import digits
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import apply_element, forward


def test_linear_path():
    a, b = torch.zeros(3, 5), torch.ones(3, 5)
    lam = lambda_grid(25)
    assert lam.shape == (25,) and lam[0] == 0 and lam[-1] == 1
    path = linear_path(a, b, lam)
    assert path.shape == (3, 25, 5)
    torch.testing.assert_close(path[:, 12], torch.full((3, 5), 0.5))
    assert linear_path(a, b, 7).shape == (3, 7, 5)


def test_inr_curves(digits_inr_zoo):
    ps = zoo_pairs(digits_inr_zoo, "train", "independent", n_pairs=6, seed=0)
    ev = zoo_evaluator(digits_inr_zoo, "train", ps.index_a)
    assert ev.primary == "mse" and ev.targets.shape == (6, 784)
    path = method_path(ps.arch, ps.a, ps.b, "wm-signed", lambda_grid(9))
    curves = ev(path)
    assert curves["mse"].shape == (6, 9)
    torch.testing.assert_close(curves["mse_endpoint"][:, 0], torch.zeros(6))
    # endpoint losses are those of the networks themselves (the aligned b is function-equal to b)
    render = forward(ps.arch, torch.cat([ps.a, ps.b]), coordinate_grid(28))[..., 0]
    mse = (render - torch.cat([ev.targets, ev.targets])).pow(2).mean(1)
    torch.testing.assert_close(curves["mse"][:, 0], mse[:6], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(curves["mse"][:, -1], mse[6:], rtol=1e-4, atol=1e-6)
    # a reference other than the path's start (autoencoder paths), and chunked rendering
    small = InrEvaluator(ps.arch, ev.targets, reference=ps.b, budget=784 * 32 * 5)
    c2 = small(path)
    torch.testing.assert_close(c2["mse"], curves["mse"])
    assert torch.all(c2["mse_endpoint"][:, -1] < 1e-8)
    # without targets the loss is against the reference rendering
    assert InrEvaluator(ps.arch, None).primary == "mse_endpoint"


def test_cnn_curves_mixed_activations(digits_cnn_zoo):
    x, y = digits.classification_images("test")
    relu = zoo_pairs(digits_cnn_zoo, "train", "independent", n_pairs=3, activation="relu")
    tanh = zoo_pairs(digits_cnn_zoo, "train", "independent", n_pairs=3, activation="tanh")
    a, b = torch.cat([relu.a, tanh.a]), torch.cat([relu.b, tanh.b])
    acts = ["relu"] * 3 + ["tanh"] * 3
    path = linear_path(a, b, 5)
    ev = ClassifierEvaluator(digits_cnn_zoo.arch, x, y, acts, budget=x.numel() * 16 * 7)  # 7 networks a chunk
    curves = ev(path)
    assert curves["loss"].shape == (6, 5) and torch.all((curves["accuracy"] >= 0) & (curves["accuracy"] <= 1))
    for k in (0, 4):
        logits = forward(digits_cnn_zoo.arch, path[k], x, acts[k])
        torch.testing.assert_close(curves["loss"][k], F.cross_entropy(logits.transpose(1, 2), y.expand(5, -1),
                                                                      reduction="none").mean(1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(curves["accuracy"][k], (logits.argmax(-1) == y).float().mean(1))
    with pytest.raises(ValueError):
        ev(path[:2])


def test_matching_lowers_barrier_of_orbit_pairs(digits_cnn_zoo):
    ps = zoo_pairs(digits_cnn_zoo, "train", "orbit-PS", n_pairs=6, seed=1, activation="relu")
    ev = zoo_evaluator(digits_cnn_zoo, "train", ps.index_a, activation="relu")
    naive = barrier_metrics(method_curves(ps.arch, ps.a, ps.b, "naive", ev)["loss"])["barrier"]
    scale = barrier_metrics(method_curves(ps.arch, ps.a, ps.b, "wm-scale", ev)["loss"])["barrier"]
    assert scale.mean() < 0.1 * naive.mean()
    assert torch.all(scale < 0.05)


def test_pair_sets(digits_inr_zoo, digits_cnn_zoo):
    meta = digits_inr_zoo.read_meta("train")
    ps = zoo_pairs(digits_inr_zoo, "train", "independent", n_pairs=10, seed=3)
    assert len(ps) == 10 and ps.pair_type == "independent" and ps.activation == "sine"
    assert np.array_equal(meta["image_index"][ps.index_a], meta["image_index"][ps.index_b])
    assert np.all(meta["seed_index"][ps.index_a] != meta["seed_index"][ps.index_b])
    assert len(set(ps.index_a) | set(ps.index_b)) == 20  # disjoint
    again = zoo_pairs(digits_inr_zoo, "train", "independent", n_pairs=10, seed=3)
    assert np.array_equal(ps.index_a, again.index_a) and torch.equal(ps.a, again.a)
    other = zoo_pairs(digits_inr_zoo, "train", "independent", n_pairs=10, seed=4)
    assert not np.array_equal(ps.index_a, other.index_a)

    orbit = zoo_pairs(digits_inr_zoo, "train", "orbit-PD", n_pairs=5, seed=0, sigma=0.0, dtype=torch.float64)
    assert torch.equal(orbit.b, apply_element(orbit.arch, orbit.a, orbit.element))
    noisy = zoo_pairs(digits_inr_zoo, "train", "orbit-PD", n_pairs=5, seed=0, dtype=torch.float64)
    torch.testing.assert_close((noisy.b - orbit.b).std(), torch.tensor(0.005, dtype=torch.float64), rtol=0.1, atol=0)
    assert torch.equal(noisy.element.perms[0], orbit.element.perms[0])

    acts = np.array(digits_cnn_zoo.activations("train"))
    relu = zoo_pairs(digits_cnn_zoo, "train", "independent", n_pairs=None, activation="relu")
    assert np.all(acts[relu.index_a] == "relu") and np.all(acts[relu.index_b] == "relu")
    assert len(relu) == (acts == "relu").sum() // 2
    with pytest.raises(ValueError, match="activation="):
        zoo_pairs(digits_cnn_zoo, "train", "independent")
    with pytest.raises(ValueError, match="pair type"):
        zoo_pairs(digits_inr_zoo, "train", "sideways")
