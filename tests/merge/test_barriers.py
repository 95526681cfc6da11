"""Barrier metrics against values computed by hand on hand-made curves."""
import pytest
import torch

from gmnae.merge.barriers import auc, barrier, barrier_linear, barrier_metrics, endpoint_line, max_loss


def test_hand_made_curves():
    # λ = 0, .25, .5, .75, 1
    curves = torch.tensor([
        [1.0, 2.0, 4.0, 2.0, 3.0],   # bump in the middle, uneven endpoints
        [1.0, 1.0, 1.0, 1.0, 1.0],   # flat
        [0.0, 0.25, 0.5, 0.75, 1.0],  # exactly the endpoint line
        [2.0, 1.0, 0.5, 1.0, 2.0],   # valley: negative barrier
    ], dtype=torch.float64)
    # Git Re-Basin: max - (L0 + L1) / 2
    torch.testing.assert_close(barrier(curves), torch.tensor([4 - 2.0, 0.0, 1 - 0.5, 2 - 2.0], dtype=torch.float64))
    # against the line: line of row 0 is 1, 1.5, 2, 2.5, 3 -> differences 0, .5, 2, -.5, 0
    torch.testing.assert_close(barrier_linear(curves), torch.tensor([2.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    # trapezoid with h = .25 of the differences: row 0: .25 * (0/2 + .5 + 2 - .5 + 0/2) = .5
    # row 3: line is 2 everywhere, differences 0, -1, -1.5, -1, 0 -> .25 * (-3.5) = -.875
    torch.testing.assert_close(auc(curves), torch.tensor([0.5, 0.0, 0.0, -0.875], dtype=torch.float64))
    # absolute area: row 0: .25 * (.5 + 2 + 4 + 2 + 1.5) = 2.5
    torch.testing.assert_close(auc(curves, relative=False), torch.tensor([2.5, 1.0, 0.5, 1.125], dtype=torch.float64))
    torch.testing.assert_close(max_loss(curves), torch.tensor([4.0, 1.0, 1.0, 2.0], dtype=torch.float64))


def test_uneven_grid_and_batch_shape():
    lam = torch.tensor([0.0, 0.1, 1.0])
    c = torch.tensor([[[0.0, 1.0, 0.0]]])  # [1, 1, 3]
    torch.testing.assert_close(endpoint_line(c, lam), torch.zeros(1, 1, 3))
    torch.testing.assert_close(auc(c, lam), torch.tensor([[0.5 * 0.1 * 1.0 + 0.5 * 0.9 * 1.0]]))
    assert barrier(c).shape == (1, 1)
    with pytest.raises(ValueError):
        auc(c, torch.tensor([0.0, 1.0]))


def test_accuracy_metrics_count_drops_as_positive():
    acc = torch.tensor([[0.9, 0.5, 0.7]])
    m = barrier_metrics(acc, higher_is_better=True)
    torch.testing.assert_close(m["barrier"], torch.tensor([0.8 - 0.5]))
    torch.testing.assert_close(m["barrier_linear"], torch.tensor([0.8 - 0.5]))
    torch.testing.assert_close(m["min"], torch.tensor([0.5]))
    torch.testing.assert_close(m["auc_abs"], torch.tensor([0.5 * (0.45 + 0.5 + 0.35)]))
    loss = barrier_metrics(torch.tensor([[1.0, 3.0, 2.0]]))
    assert set(loss) == {"barrier", "barrier_linear", "auc", "auc_abs", "max"}
