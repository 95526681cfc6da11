"""The functional fine-tune of merged networks: its target is the parents' weighted mean function, it
moves a merge towards that function on real trained networks, and each network is fine-tuned on its own."""
import pytest
import torch

from gmnae.merge.finetune import finetune_to_function, finetune_to_parents, parents_target
from gmnae.merge.interpolation import linear_path
from gmnae.tasks import digits
from gmnae.tasks.grid import coordinate_grid
from gmnae.weightspace import cnn_forward, siren_render


def _distance(arch, params, target, inputs):
    out = siren_render(arch, params, inputs) if arch.family == "siren" else cnn_forward(arch, params, inputs).softmax(-1)
    return (out - target).pow(2).mean(dim=tuple(range(1, out.dim())))


def test_target_is_the_weighted_mean_of_the_parents_outputs(trained_sirens, trained_relu_cnns):
    arch, p = trained_sirens
    coords = coordinate_grid(28, dtype=torch.float64)
    w = torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64)
    parents = torch.stack([p[0:2], p[2:4]], dim=1)  # [2 merges, 2 parents, P]
    target = parents_target(arch, parents, w, coords)
    r = siren_render(arch, p[:4], coords)
    torch.testing.assert_close(target[0], 0.25 * r[0] + 0.75 * r[2])
    torch.testing.assert_close(target[1], 0.5 * r[1] + 0.5 * r[3])

    arch, p = trained_relu_cnns
    images = digits.classification_images("test")[0][:32].double()
    target = parents_target(arch, p[None, :3], torch.full((1, 3), 1 / 3, dtype=torch.float64), images)
    probs = cnn_forward(arch, p[:3], images).softmax(-1)
    torch.testing.assert_close(target[0], probs.mean(0))


@pytest.mark.parametrize("fixture", ["trained_sirens", "trained_relu_cnns", "trained_tanh_cnns"])
def test_finetune_moves_a_naive_midpoint_towards_the_parents_function(request, fixture):
    arch, p = request.getfixturevalue(fixture)
    inputs = (coordinate_grid(28, dtype=torch.float64) if arch.family == "siren"
              else digits.classification_images("train")[0][:128].double())
    parents = torch.stack([p[0:4], p[4:8]], dim=1)
    weights = torch.full((4, 2), 0.5, dtype=torch.float64)
    midpoint = linear_path(p[0:4], p[4:8], torch.tensor([0.5], dtype=torch.float64))[:, 0]
    target = parents_target(arch, parents, weights, inputs)
    tuned = finetune_to_parents(arch, midpoint, parents, weights, inputs, steps=40, lr=1e-3)
    before, after = _distance(arch, midpoint, target, inputs), _distance(arch, tuned, target, inputs)
    assert (after < 0.7 * before).all(), (before, after)
    assert not torch.equal(tuned, midpoint) and midpoint.requires_grad is False


def test_each_network_is_tuned_on_its_own_and_zero_steps_is_the_identity(trained_sirens):
    arch, p = trained_sirens
    coords = coordinate_grid(28, dtype=torch.float64)
    target = siren_render(arch, p[8:11], coords)
    together = finetune_to_function(arch, p[:3], target, coords, steps=5)
    alone = torch.cat([finetune_to_function(arch, p[i:i + 1], target[i:i + 1], coords, steps=5) for i in range(3)])
    torch.testing.assert_close(together, alone)
    torch.testing.assert_close(finetune_to_function(arch, p[:3], target, coords, steps=0), p[:3], rtol=0, atol=0)


def test_function_inputs_are_the_grid_or_the_tasks_train_images(digits_inr_zoo, digits_cnn_zoo):
    from gmnae.merge.finetune import function_inputs
    from gmnae.tasks.classification import task_images

    torch.testing.assert_close(function_inputs(digits_inr_zoo.arch, digits_inr_zoo.task), coordinate_grid(28))
    x = function_inputs(digits_cnn_zoo.arch, digits_cnn_zoo.task, n_images=50)
    torch.testing.assert_close(x, task_images(digits_cnn_zoo.task, "train")[0][:50])
    assert not torch.equal(x, task_images(digits_cnn_zoo.task, "test")[0][:50])  # never the scoring images
