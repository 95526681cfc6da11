"""K-way merges: MergeMany recovers planted symmetries exactly; `gmnae merge A B C ...`; the K-way table."""
import numpy as np
import pytest
import torch

from gmnae.cli import main
from gmnae.merge.kway import merge_many, sign_canonicalisation, weighted_mean
from gmnae.evaluation.kway_eval import KWayEvaluation, kway_groups
from gmnae.merge.matching import transform
from gmnae.tasks.classification import task_images
from gmnae.tasks.grid import coordinate_grid
from gmnae.tasks.inr_targets import inr_targets
from gmnae.weightspace import apply_element, forward, invert, random_element

from .test_command import _error, _flat, _save

# (fixture, planted kinds, matching variant); the variant's frame must make the planted group exact
PLANTED = [("trained_sirens", "P", "wm"), ("trained_sirens", "PD", "wm-signed"),
           ("trained_tanh_cnns", "PD", "wm-signed"), ("trained_relu_cnns", "P", "wm"),
           ("trained_relu_cnns", "PS", "wm-scale")]


@pytest.mark.parametrize("fixture,kinds,method", PLANTED)
@pytest.mark.parametrize("K", [3, 8])
def test_mergemany_recovers_planted_transforms_of_k_copies(fixture, kinds, method, K, request):
    arch, params = request.getfixturevalue(fixture)
    x = params[:6]                                   # 6 groups, each K copies of one trained network
    G = len(x)
    planted = [random_element(arch, G, kinds, torch.Generator().manual_seed(10 + k), dtype=torch.float64)
               for k in range(1, K)]
    nets = torch.stack([x] + [apply_element(arch, x, g) for g in planted], 1)  # copy 0 is x itself
    assert (nets[:, 1:] - x[:, None]).abs().amax() > 0.1
    res = merge_many(arch, nets, method)
    assert res.converged.all() and res.method == method
    scale_tol = dict(rtol=1e-9, atol=1e-12) if "S" not in kinds else dict(rtol=1e-6, atol=1e-9)
    for k in range(1, K):
        inverse = invert(planted[k - 1])       # the element that takes copy k back onto x
        for l in range(len(arch.hidden_sizes)):
            assert torch.equal(res.elements[k].perms[l], inverse.perms[l])
            torch.testing.assert_close(res.elements[k].scales[l], inverse.scales[l], **scale_tol)
        torch.testing.assert_close(transform(arch, nets[:, k], res.elements[k]), res.aligned[:, k], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(res.aligned, x[:, None].expand_as(nets), **scale_tol)
    torch.testing.assert_close(res.merged, x, **scale_tol)


def test_mergemany_of_independent_networks_keeps_functions(trained_sirens):
    """On separately trained INRs each aligned network still computes its own function, and the
    aligned group is closer together than the raw one (the quantity MergeMany increases)."""
    arch, params = trained_sirens
    nets = params[:8].view(2, 4, -1)
    res = merge_many(arch, nets)
    grid = coordinate_grid(28, dtype=torch.float64)
    for k in range(4):
        torch.testing.assert_close(forward(arch, res.aligned[:, k], grid), forward(arch, nets[:, k], grid),
                                   rtol=1e-9, atol=1e-9)
    spread = lambda t: (t - t.mean(1, keepdim=True)).pow(2).sum((1, 2))  # noqa: E731
    assert (spread(res.aligned) < spread(nets)).all()
    torch.testing.assert_close(res.merged, res.aligned.mean(1))


def test_sign_canonicalisation_is_one_point_per_sign_orbit(trained_tanh_cnns):
    arch, params = trained_tanh_cnns
    x = params[:5]
    y = apply_element(arch, x, random_element(arch, 5, "D", torch.Generator().manual_seed(1), dtype=torch.float64))
    cx, cy = (transform(arch, t, sign_canonicalisation(arch, t)) for t in (x, y))
    torch.testing.assert_close(cx, cy, rtol=0, atol=1e-15)


def test_merge_command_k_networks(trained_tanh_cnns, tmp_path, capsys):
    arch, params = trained_tanh_cnns
    files = []
    for i in range(4):
        _save(arch, params[i], tmp_path / f"n{i}.pt", prefix="net")
        files.append(str(tmp_path / f"n{i}.pt"))
    common = ["--arch", "digits-cnn-tanh"]
    assert main(["merge", *files, "--method", "mergemany", *common, "--out", str(tmp_path / "mm.pt")]) == 0
    want = merge_many(arch, params[:4].float().double(), "wm-signed").merged
    got = torch.load(tmp_path / "mm.pt")
    assert list(got) == [f"net.{i}.{k}" for i in range(4) for k in ("weight", "bias")]
    torch.testing.assert_close(_flat(got), want.float().double())
    assert "matching wm-signed" in capsys.readouterr().out
    assert main(["merge", *files, "--method", "naive", "--weights", "1,1,2,4", *common,
                 "--out", str(tmp_path / "nv.pt")]) == 0
    w = torch.tensor([1, 1, 2, 4], dtype=torch.float64) / 8
    torch.testing.assert_close(_flat(torch.load(tmp_path / "nv.pt")),
                               (w[:, None] * params[:4].float().double()).sum(0).float().double())
    out = ["--out", str(tmp_path / "bad.pt"), *common]
    assert "mergemany" in _error(capsys, ["merge", *files, "--method", "wm-signed", *out])
    assert "--weights" in _error(capsys, ["merge", *files, "--method", "naive", "--alpha", "0.3", *out])
    assert "3 weights for 4 inputs" in _error(capsys, ["merge", *files, "--method", "naive", "--weights", "1,2,3", *out])
    assert "non-negative" in _error(capsys, ["merge", *files, "--method", "naive", "--weights", "1,-2,3,1", *out])
    assert "wm-scale" in _error(capsys, ["merge", *files, "--method", "mergemany", "--match", "wm-scale", *out])
    assert "--curve" in _error(capsys, ["merge", *files, "--method", "naive", "--curve", str(tmp_path / "c.csv"), *out])
    assert not (tmp_path / "bad.pt").exists()


def test_kway_groups_and_table_against_direct_computation(digits_inr_zoo, digits_cnn_zoo):
    # INR zoo with 2 seeds per image: K=2 groups are the two INRs of one image; K=4 is not there
    g = kway_groups(digits_inr_zoo, "train", 2, 5)
    meta = digits_inr_zoo.read_meta("train")
    assert g.nets.shape[:2] == (5, 2)
    assert (meta["image_index"][g.rows[:, 0]] == meta["image_index"][g.rows[:, 1]]).all()
    assert len(set(g.rows.reshape(-1).tolist())) == 10
    assert kway_groups(digits_inr_zoo, "train", 4, 5) is None
    res = KWayEvaluation(digits_inr_zoo, "train", (2, 4), groups=5).run()
    assert any("K=4" in n and "--seeds 4" in n for n in res.notes)
    by = {r["method"]: r for r in res.rows}
    target = inr_targets(digits_inr_zoo.task, {k: v[g.rows[:, 0]] for k, v in meta.items()}).double()
    grid = coordinate_grid(28, dtype=torch.float64)

    def psnr(nets):
        img = forward(digits_inr_zoo.arch, nets, grid)[..., 0]
        return 10 * torch.log10(1 / (img - target).pow(2).mean(1))

    assert by["naive"]["merged_mean"] == pytest.approx(float(psnr(g.nets.mean(1)).mean()), rel=1e-5)
    parents = (psnr(g.nets[:, 0]) + psnr(g.nets[:, 1])) / 2
    assert by["naive"]["parents_mean"] == pytest.approx(float(parents.mean()), rel=1e-5)
    mm = merge_many(digits_inr_zoo.arch, g.nets).merged
    assert by["mergemany"]["merged_mean"] == pytest.approx(float(psnr(mm).mean()), rel=1e-5)
    assert by["mergemany"]["merged_mean"] > by["naive"]["merged_mean"]  # matching helps independent INRs
    assert "| sine | 2 | 5 |" in res.markdown() and "<table>" in res.html()

    # CNN zoo (mixed activations): groups of one activation, accuracy on the held-out digits
    res = KWayEvaluation(digits_cnn_zoo, "train", (3,), groups=4).run()
    assert {r["activation"] for r in res.rows} == {"relu", "tanh"}
    gc = kway_groups(digits_cnn_zoo, "train", 3, 4, activation="relu")
    acts = np.asarray(digits_cnn_zoo.activations("train"))
    assert (acts[gc.rows] == "relu").all()
    x, y = task_images(digits_cnn_zoo.task, "test")
    acc = lambda nets: (forward(gc.arch, nets, x.double()).argmax(-1) == y).double().mean(1)  # noqa: E731
    row = next(r for r in res.rows if r["activation"] == "relu" and r["method"] == "naive")
    assert row["merged_mean"] == pytest.approx(float(acc(weighted_mean(gc.nets)).mean()), abs=1e-9)
    assert row["parents_mean"] == pytest.approx(float(acc(gc.nets.reshape(12, -1)).view(4, 3).mean(1).mean()), abs=1e-9)


def test_kway_table_finetune_rows_match_the_library_and_improve_the_merge(digits_inr_zoo):
    """`finetune=S` adds "<method>+ftS" rows: the library's fine-tune of that merge towards the group's mean
    rendering, scored like every row; on independent INRs it lifts the naive average."""
    from gmnae.merge.finetune import finetune_to_parents

    res = KWayEvaluation(digits_inr_zoo, "train", (2,), groups=4, finetune=20).run()
    by = {r["method"]: r for r in res.rows}
    assert {"naive+ft20", "mergemany+ft20"} <= set(by)
    g = kway_groups(digits_inr_zoo, "train", 2, 4)
    meta = digits_inr_zoo.read_meta("train")
    target = inr_targets(digits_inr_zoo.task, {k: v[g.rows[:, 0]] for k, v in meta.items()}).double()
    grid = coordinate_grid(28, dtype=torch.float64)
    tuned = finetune_to_parents(digits_inr_zoo.arch, g.nets.double().mean(1), g.nets.double(),
                                torch.full((4, 2), 0.5, dtype=torch.float64), grid, 20)
    img = forward(digits_inr_zoo.arch, tuned, grid)[..., 0]
    assert by["naive+ft20"]["merged_mean"] == pytest.approx(float((10 * torch.log10(1 / (img - target).pow(2).mean(1))).mean()), rel=1e-5)
    assert by["naive+ft20"]["merged_mean"] > by["naive"]["merged_mean"] + 5
