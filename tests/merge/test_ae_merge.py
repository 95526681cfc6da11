"""`gmnae merge --method ae / ae-endpoints`: the decoded mean latent, its invariance, its refusals."""
import numpy as np
import pytest
import torch

from gmnae.training.autoencoder import WeightSpaceAutoencoder
from gmnae.cli import main
from gmnae.evaluation.ae_merge import ae_merge
from gmnae.weightspace import apply_element, random_element, unflatten

from .test_command import _error, _flat, _save


@pytest.fixture(scope="module")
def model(inr_autoencoder_run):
    return WeightSpaceAutoencoder.load_from_checkpoint(inr_autoencoder_run / "checkpoints" / "last.ckpt").eval()


@pytest.fixture(scope="module")
def same_image(digits_inr_zoo):
    """Four trained SIRENs: the two seeds of image i and of image j (float32, as the zoo stores them)."""
    meta = digits_inr_zoo.read_meta("test")
    p = torch.from_numpy(digits_inr_zoo.read_params("test"))
    imgs = np.unique(meta["image_index"])[:2]
    rows = [int(r) for img in imgs for r in np.nonzero(meta["image_index"] == img)[0][:2]]
    return digits_inr_zoo.arch, p[rows]


def _expected_latent(model, x):
    """enc(x) from the module's own parts: ScaleGMN encoder plus (when configured) the probe branch."""
    z = model.encoder(x, activation="sine")
    return z if model.probe is None else z + model.probe(x, "sine")


@torch.no_grad()
def test_ae_output_is_decoded_weighted_mean_latent(model, same_image, inr_autoencoder_run, tmp_path, capsys):
    arch, nets = same_image
    files = []
    for i, x in enumerate(nets[:3]):
        _save(arch, x, tmp_path / f"n{i}.pth")
        files.append(str(tmp_path / f"n{i}.pth"))
    run = str(inr_autoencoder_run)
    # three inputs, --weights (scaled to sum 1), the run folder as --model
    assert main(["merge", *files, "--method", "ae", "--model", run, "--weights", "1,2,5",
                 "--out", str(tmp_path / "m3.pt")]) == 0
    z = torch.stack([_expected_latent(model, x[None])[0] for x in nets[:3]])
    w = torch.tensor([1.0, 2.0, 5.0]) / 8.0
    want = model.decoder((w[:, None] * z).sum(0, keepdim=True))[0]
    got = torch.load(tmp_path / "m3.pt")
    assert list(got) == ["seq.0.weight", "seq.0.bias", "seq.1.weight", "seq.1.bias", "seq.2.weight", "seq.2.bias"]
    torch.testing.assert_close(_flat(got).float(), want, rtol=1e-5, atol=1e-6)
    # two inputs, --alpha, the checkpoint path as --model
    ckpt = str(inr_autoencoder_run / "checkpoints" / "last.ckpt")
    assert main(["merge", files[0], files[1], "--method", "ae", "--model", ckpt, "--alpha", "0.25",
                 "--out", str(tmp_path / "m2.pt")]) == 0
    want = model.decoder(0.75 * z[:1] + 0.25 * z[1:2])[0]
    torch.testing.assert_close(_flat(torch.load(tmp_path / "m2.pt")).float(), want, rtol=1e-5, atol=1e-6)
    # ae-endpoints (two images): the mean of the decodings, measurably not the decoding of the mean
    assert main(["merge", files[0], files[2], "--method", "ae-endpoints", "--model", run,
                 "--out", str(tmp_path / "me.pt")]) == 0
    want = 0.5 * (model.decoder(z[:1]) + model.decoder(z[2:3]))[0]
    other = model.decoder(0.5 * (z[:1] + z[2:3]))[0]
    gap = (want - other).abs().max()
    print("gap", gap)
    got = _flat(torch.load(tmp_path / "me.pt")).float()
    torch.testing.assert_close(got, want, rtol=0, atol=float(gap) / 20)
    assert "method ae-endpoints" in capsys.readouterr().out


@torch.no_grad()
def test_kway_ae_of_transformed_copies_is_the_reconstruction(model, same_image, inr_autoencoder_run, tmp_path):
    """The encoder is invariant: K symmetry-transformed copies of one network merge into dec(enc(θ))."""
    arch, nets = same_image
    x = nets[0].double()
    K = 6
    g = random_element(arch, K, "PD", torch.Generator().manual_seed(7), dtype=torch.float64)
    copies = apply_element(arch, x.expand(K, -1), g)
    assert (copies - x).abs().max() > 0.1  # really moved
    recon = model.decode(model.encode(x[None].float(), torch.zeros(1, dtype=torch.long)))[0]
    merged = ae_merge(model, copies.float())
    torch.testing.assert_close(merged, recon, rtol=1e-4, atol=1e-5)
    # the same through the command, unequal weights (the latents are equal, so weights do not matter)
    files = []
    for i, c in enumerate(copies[:4]):
        _save(arch, c, tmp_path / f"c{i}.pth")
        files.append(str(tmp_path / f"c{i}.pth"))
    assert main(["merge", *files, "--method", "ae", "--model", str(inr_autoencoder_run), "--weights", "3,1,0,1",
                 "--out", str(tmp_path / "m.pt")]) == 0
    torch.testing.assert_close(_flat(torch.load(tmp_path / "m.pt")).float(), recon, rtol=1e-4, atol=1e-5)


def test_architecture_other_than_the_models_zoo_is_refused(same_image, inr_autoencoder_run, tmp_path, capsys):
    arch, nets = same_image
    _save(arch, nets[0], tmp_path / "a.pth")
    sd = {k: v.clone() for k, v in torch.load(tmp_path / "a.pth").items()}
    sd["seq.1.weight"], sd["seq.1.bias"], sd["seq.2.weight"] = torch.zeros(16, 32), torch.zeros(16), torch.zeros(1, 16)
    torch.save(sd, tmp_path / "narrow.pth")
    # same layout in both inputs, so only the model can tell them apart
    torch.save(sd, tmp_path / "narrow2.pth")
    out = tmp_path / "m.pt"
    run = str(inr_autoencoder_run)
    err = _error(capsys, ["merge", str(tmp_path / "narrow.pth"), str(tmp_path / "narrow2.pth"), "--method", "ae",
                          "--model", run, "--out", str(out)])
    assert "narrow.pth" in err and "model's zoo" in err and "[16, 32]" in err and "siren" in err.lower()
    err = _error(capsys, ["merge", str(tmp_path / "a.pth"), str(tmp_path / "a.pth"), "--method", "ae", "--model", run,
                          "--arch", "small-cnn-relu", "--out", str(out)])
    assert "--arch small-cnn-relu" in err and "trained on" in err
    assert "--model" in _error(capsys, ["merge", str(tmp_path / "a.pth"), str(tmp_path / "a.pth"), "--method", "ae",
                                        "--out", str(out)])
    assert "no such run folder" in _error(capsys, ["merge", str(tmp_path / "a.pth"), str(tmp_path / "a.pth"),
                                                   "--method", "ae", "--model", str(tmp_path / "nope"), "--out", str(out)])
    assert not out.exists()


def test_evaluation_reports_midpoints_before_and_after_the_finetune(inr_autoencoder_run, digits_inr_zoo):
    """`evaluation.finetune_steps=S`: each method's independent-pair midpoint before and after S steps, scored
    like the curves; the 'before' value equals the curve's midpoint and the library's fine-tune gives 'after'."""
    from gmnae.merge.finetune import finetune_to_parents
    from gmnae.merge.interpolation import method_path
    from gmnae.evaluation.merge_evaluation import MergeEvaluation
    from gmnae.tasks.grid import coordinate_grid

    model = WeightSpaceAutoencoder.load_from_checkpoint(inr_autoencoder_run / "checkpoints" / "last.ckpt",
                                                        map_location="cpu").eval()
    ev = MergeEvaluation(digits_inr_zoo, "val", pairs_per_type=4, lambdas=3, finetune_steps=15)
    res = ev.run(model)
    rec = res.reconstruction
    assert {"midpoint_naive_psnr", "midpoint_naive+ft15_psnr", "midpoint_ae+ft15_psnr"} <= set(rec)
    mid_curve = res.curves["independent"]["naive"]["mse"][:, 1]  # λ grid 0, 0.5, 1
    assert rec["midpoint_naive_psnr"] == pytest.approx(float((10 * torch.log10(1 / mid_curve.double())).mean()), rel=1e-4)
    ps = ev.pair_sets["independent"]
    a, b = ps.a.float(), ps.b.float()
    mid = method_path(ps.arch, a, b, "naive", torch.tensor([0.5]))[:, 0]
    tuned = finetune_to_parents(ps.arch, mid, torch.stack([a, b], 1), torch.full((len(a), 2), 0.5),
                                coordinate_grid(28), 15)
    mse = ev.evaluator("independent")(tuned.unsqueeze(1))["mse"][:, 0].double()
    assert rec["midpoint_naive+ft15_psnr"] == pytest.approx(float((10 * torch.log10(1 / mse)).mean()), rel=1e-4)
    assert rec["midpoint_naive+ft15_psnr"] > rec["midpoint_naive_psnr"] + 3
